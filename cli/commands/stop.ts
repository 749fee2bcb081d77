import { toJson } from "@bufbuild/protobuf";
import { Command } from "commander";
import { TaskSchema } from "../../gen/cube/v1/task_pb.js";
import { CliError } from "../cli-error.js";
import { CALL_TIMEOUT_MS } from "../client.js";
import {
  addClientOptions,
  arg,
  type ClientOptions,
  outputFormat,
  withManager,
} from "../client-options.js";
import { describeError } from "../describe-error.js";
import { ExitCode } from "../exit-codes.js";
import type { Io } from "../io.js";
import { parseDuration } from "../parse-duration.js";
import { resolveTask } from "../resolve-task.js";
import { waitForTask } from "../wait-for-task.js";

interface StopOptions extends ClientOptions {
  wait?: boolean;
  timeout: number;
}

/** `cube stop ID…`: asks the manager to stop tasks; with --wait, until they have. */
export function stopCommand(io: Io): Command {
  const cmd = new Command("stop")
    .description("stop tasks: their containers are stopped and removed")
    .argument("<tasks...>", "task ids, unique id prefixes, or names")
    .option("--wait", "return once the tasks have stopped")
    .option(
      "--timeout <duration>",
      "with --wait: give up after this long",
      arg(parseDuration),
      60_000,
    );
  addClientOptions(cmd)
    .addHelpText(
      "after",
      `
Prints the id of each task it stopped (with -o json, the task, one JSON object a line). Stopping a task that already ended is not an error.

Examples:
  cube stop web
  cube stop 3f2a9c01 7b1e44d0 --wait`,
    )
    .action((refs: string[], opts: StopOptions) => stop(io, refs, opts));
  return cmd;
}

async function stop(io: Io, refs: string[], opts: StopOptions): Promise<void> {
  const startedAt = io.now();
  let failure: CliError | undefined;
  await withManager(io, opts, async (clients) => {
    for (const ref of refs) {
      try {
        const found = await resolveTask(clients, ref);
        const { task } = await clients.tasks.stopTask(
          { id: found.id },
          { timeoutMs: CALL_TIMEOUT_MS },
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
        if (outputFormat(opts) === "json") {
          const { task: now } = await clients.tasks.getTask(
            { id: found.id },
            { timeoutMs: CALL_TIMEOUT_MS },
          );
          io.stdout.write(`${JSON.stringify(toJson(TaskSchema, now ?? found))}\n`);
        } else {
          io.stdout.write(`${found.id}\n`);
        }
      } catch (error) {
        const described = describeError(error, clients.address);
        // Unreachable is the same for every id: say it once.
        if (described.exitCode === ExitCode.Unreachable) throw described;
        io.stderr.write(`cube: ${described.message}\n`);
        failure ??= described;
      }
    }
  });
  if (failure) throw new CliError("", failure.exitCode);
}
