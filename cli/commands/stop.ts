import { toJson } from "@bufbuild/protobuf";
import { Command } from "commander";
import { TaskSchema } from "../../gen/cube/v1/task_pb.js";
import { printable } from "../../lib/printable-text.js";
import { CliError } from "../cli-error.js";
import { CALL_TIMEOUT_MS } from "../client.js";
import {
  addClientOptions,
  type ClientOptions,
  collect,
  durationOption,
  outputFormat,
  withManager,
} from "../client-options.js";
import { describeError } from "../describe-error.js";
import { ExitCode } from "../exit-codes.js";
import type { Io } from "../io.js";
import { parseTaskRef, resolveTask } from "../resolve-task.js";
import { waitForTask } from "../wait-for-task.js";

interface StopOptions extends ClientOptions {
  wait?: boolean;
  timeout: number;
}

/** `cube stop ID…`: asks the manager to stop tasks; with --wait, until they have. */
export function stopCommand(io: Io): Command {
  const cmd = new Command("stop")
    .description("stop tasks: their containers are stopped and removed")
    .argument("<tasks...>", "task ids, unique id prefixes, or names", collect(parseTaskRef))
    .option("--wait", "return once the tasks have stopped")
    .addOption(
      durationOption("--timeout <duration>", "with --wait: give up after this long", 60_000),
    );
  addClientOptions(cmd)
    .addHelpText(
      "after",
      `
Prints the id of each task it stopped (with -o json, the task, one JSON object a line). Stopping a task that already ended is not an error.

Exit codes: 0 all stopped (with --wait: all ended, COMPLETED or FAILED alike), 4 no such task,
6 with --wait: a task not ended at --timeout, 130 interrupted (Ctrl-C: the tasks not stopped
are named). A task that fails does not stop the others: the code is the first failure's.

Examples:
  cube stop web
  cube stop 3f2a9c01 7b1e44d0 --wait`,
    )
    .action((refs: string[], opts: StopOptions) => stop(io, refs, opts));
  return cmd;
}

async function stop(io: Io, refs: string[], opts: StopOptions): Promise<void> {
  const startedAt = io.now();
  // Ctrl-C cancels the call in flight too, not only a --wait.
  const signal = io.interrupted;
  let failure: CliError | undefined;
  await withManager(io, opts, async (clients) => {
    for (const [i, ref] of refs.entries()) {
      if (signal.aborted) throw interrupted(undefined, refs.slice(i));
      // Set once this task got as far as asked (the stop recorded; with --wait, ended).
      let stopped = false;
      try {
        const found = await resolveTask(clients, ref, signal);
        const { task } = await clients.tasks.stopTask(
          { id: found.id },
          { timeoutMs: CALL_TIMEOUT_MS, signal },
        );
        if (opts.wait && task) {
          const outcome = await waitForTask(clients, io, {
            task,
            goal: "stopped",
            timeoutMs: opts.timeout,
            startedAt,
          });
          if (outcome.exitCode !== ExitCode.Ok)
            throw new CliError(outcome.message, outcome.exitCode);
        }
        stopped = true;
        if (outputFormat(opts) === "json") {
          const { task: now } = await clients.tasks.getTask(
            { id: found.id },
            { timeoutMs: CALL_TIMEOUT_MS, signal },
          );
          io.stdout.write(`${JSON.stringify(toJson(TaskSchema, now ?? found))}\n`);
        } else {
          io.stdout.write(`${found.id}\n`);
        }
      } catch (error) {
        // Ctrl-C ends the command, not just this task's turn: the tasks after it are left alone.
        // This one is not stopped either unless it got that far: its --wait (or the stop call
        // itself) was cut short, so nothing says it ended.
        if (signal.aborted) throw interrupted(error, refs.slice(stopped ? i + 1 : i));
        const described = describeError(error, clients.address);
        // Unreachable is the same for every id: say it once.
        if (described.exitCode === ExitCode.Unreachable) throw described;
        io.stderr.write(`cube: ${printable(described.message)}\n`);
        failure ??= described;
      }
    }
  });
  if (failure) throw new CliError("", failure.exitCode);
}

/** The error of a Ctrl-C: what --wait said (if it was waiting), and which tasks were not asked. */
function interrupted(error: unknown, left: readonly string[]): CliError {
  const said =
    error instanceof CliError && error.exitCode === ExitCode.Interrupted
      ? error.message
      : "interrupted";
  return new CliError(
    left.length > 0 ? `${said}; not stopped: ${left.join(", ")}` : said,
    ExitCode.Interrupted,
  );
}
