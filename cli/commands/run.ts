import { toJson } from "@bufbuild/protobuf";
import { Command } from "commander";
import { TaskSchema } from "../../gen/cube/v1/task_pb.js";
import { RunTasksResponseSchema, TaskView } from "../../gen/cube/v1/task_service_pb.js";
import { parseDuration } from "../../lib/parse-duration.js";
import { LIMITS } from "../../manager/rules/validate-spec.js";
import { buildSpec, givenSpecFlags, type RunFlags } from "../build-spec.js";
import { CliError, usageError } from "../cli-error.js";
import { CALL_TIMEOUT_MS, type ManagerClients } from "../client.js";
import {
  addClientOptions,
  arg,
  type ClientOptions,
  collect,
  durationOption,
  outputFormat,
  withManager,
} from "../client-options.js";
import { ExitCode } from "../exit-codes.js";
import type { Io } from "../io.js";
import { parseCpu } from "../parse-cpu.js";
import { parseCount, parseRestartMode, positiveCount } from "../parse-enum.js";
import { parseKeyValue } from "../parse-key-value.js";
import { parsePort } from "../parse-port.js";
import { parseSize } from "../parse-size.js";
import { parseTaskFile, type TaskFile } from "../parse-task-file.js";
import { readSpecFile } from "../read-spec-file.js";
import { taskCopies } from "../task-copies.js";
import { waitForTask } from "../wait-for-task.js";

/** The flags of `cube run`: the task-shaping ones and the rest. */
interface RunOptions extends ClientOptions, RunFlags {
  id?: string;
  file?: string;
  count: number;
  wait?: boolean;
  timeout: number;
}

/**
 * Parses --max-restarts: a whole number from 1. The manager reads max_restarts 0 as its
 * default (task.proto: 3 in a row for on-failure, no limit for always), so 0 would not mean
 * never.
 */
const parseMaxRestarts = positiveCount(
  "0 would mean the default (the manager reads 0 as unset: 3 restarts in a row for on-failure, no limit for always): give 1 or more, or use --restart never for no restart",
);

/**
 * `cube run`: submits a task (or --count copies of it in one call), prints the ids, and with
 * --wait follows the one task until it runs.
 */
export function runCommand(io: Io): Command {
  const cmd = new Command("run")
    .description("run a task: a container from IMAGE, placed on a worker by the manager")
    .argument("[image]", "image to run, e.g. cube/httpd:local (not with -f)")
    .argument("[args...]", "replace the image's CMD (after --)")
    .option("--name <name>", "a name for people (need not be unique)")
    .option(
      "-e, --env <KEY=VALUE>",
      "environment variable (repeatable; KEY alone takes your value)",
      collect((s) => parseKeyValue(s, "variable", (k) => io.env[k])),
    )
    .option(
      "--secret-env <KEY=VALUE>",
      "secret environment variable: never shown back by the manager, stored encrypted (repeatable; KEY alone takes your value, which keeps it out of your shell history)",
      collect((s) => parseKeyValue(s, "variable", (k) => io.env[k])),
    )
    .option(
      "-p, --port <[HOST_IP:][HOST:]CONTAINER[/udp]>",
      "publish a port on the worker's 127.0.0.1, or on HOST_IP (repeatable)",
      collect(parsePort),
    )
    .option(
      "--cpu <cores>",
      "cpu request and limit, in cores (0.5) or millicores (500m)",
      arg(parseCpu),
    )
    .option(
      "--memory <size>",
      "memory request and limit: 256Mi, 1Gi, 512M or bytes",
      arg(parseSize),
    )
    .option(
      "--disk <size>",
      "disk for placement only, not enforced: the task goes where this much is free, but nothing stops the container writing more (1Gi, 500M or bytes)",
      arg(parseSize),
    )
    .option(
      "--health-path <path>",
      "HTTP GET this path on the first published port; 200 is healthy",
    )
    .option(
      "--health-start-period <duration>",
      "failed checks this soon after the start do not count, until one passes (e.g. 30s; default none)",
      arg(parseDuration),
    )
    .option(
      "--stop-timeout <duration>",
      "after SIGTERM, wait this long before SIGKILL when the task is stopped (e.g. 1m; 0s kills at once; whole seconds; default 10s, at most 1h)",
      arg(parseDuration),
    )
    .option(
      "--restart <policy>",
      "never, on-failure or always (default never)",
      arg(parseRestartMode),
    )
    .option(
      "--max-restarts <n>",
      "restarts in a row at most, 1 or more (default 3 for on-failure, no limit for always)",
      arg(parseMaxRestarts),
    )
    .option(
      "-l, --label <key=value>",
      "label (repeatable)",
      collect((s) => parseKeyValue(s, "label")),
    )
    .option(
      "--id <id>",
      "choose the task id; running the same id again does not start a second task",
      arg((s) => {
        // An unset variable in --id "$ID" would run a task with a random id, again each time.
        if (s.trim() === "") throw new Error("--id is empty: give an id or leave it out");
        return s;
      }),
    )
    .option(
      "-f, --file <task.yaml|task.json>",
      'read the task from a file ("-" for stdin): the JSON mapping of TaskSpec, or {id, spec}',
    )
    .option(
      "--count <n>",
      `run n copies in one call, all or none (1-${LIMITS.batchSize}); with --id ID and --name NAME they get ID-0, NAME-0, ID-1, NAME-1…`,
      arg((s) => parseCount(s, LIMITS.batchSize, 1)),
      1,
    )
    .option("--wait", "follow the task and return once it runs (and is healthy); not with --count")
    .addOption(
      durationOption("--timeout <duration>", "with --wait: give up after this long", 120_000),
    );
  addClientOptions(cmd)
    .addHelpText(
      "after",
      `
Examples:
  cube run cube/httpd:local --port 8080:80 --health-path /health --wait
  cube run cube/httpd:local --name web --memory 64Mi --cpu 0.5 --label app=web
  cube run cube/httpd:local --restart on-failure -- sh -c 'echo hi; exit 1'
  cube run -f task.yaml --wait
  cube run cube/httpd:local --count 100 --id batch --name worker --cpu 0.1

--cpu and --memory are requests the scheduler counts and limits the container gets. --disk is
a scheduling figure only, like Nomad's ephemeral_disk: it is counted against the worker's disk
when the task is placed, but the container's writes are not capped (Docker's --storage-opt
size= needs overlay2 on xfs with project quotas, which this engine does not have).

Exit codes with --wait: 0 running (and healthy), 3 failed, 6 still pending or not ready at --timeout.`,
    )
    .action((image: string | undefined, args: string[], opts: RunOptions) =>
      run(io, image, args, opts),
    );
  return cmd;
}

async function run(
  io: Io,
  image: string | undefined,
  args: string[],
  opts: RunOptions,
): Promise<void> {
  const startedAt = io.now();
  const request = await taskRequest(image, args, opts);
  if (opts.count > 1) {
    if (opts.wait) {
      throw usageError(
        "--wait follows one task: not with --count (watch them with `cube ps --watch`)",
      );
    }
    await withManager(io, opts, (clients) => runCopies(io, clients, request, opts));
    return;
  }
  await withManager(io, opts, async (clients) => {
    const { task } = await clients.tasks.runTask(request, { timeoutMs: CALL_TIMEOUT_MS });
    if (!task) throw new CliError("the manager answered without a task");
    const json = outputFormat(opts) === "json";
    if (!json) io.stdout.write(`${task.id}\n`);
    if (!opts.wait) {
      if (json) io.stdout.write(`${JSON.stringify(toJson(TaskSchema, task), null, 2)}\n`);
      return;
    }
    const outcome = await waitForTask(clients, io, {
      task,
      goal: "running",
      timeoutMs: opts.timeout,
      startedAt,
    });
    if (outcome.exitCode !== ExitCode.Ok) throw new CliError(outcome.message, outcome.exitCode);
    io.stderr.write(`${outcome.message}\n`);
    if (json) {
      const { task: now } = await clients.tasks.getTask(
        { id: task.id },
        { timeoutMs: CALL_TIMEOUT_MS },
      );
      io.stdout.write(`${JSON.stringify(toJson(TaskSchema, now ?? task), null, 2)}\n`);
    }
  });
}

/** Submits --count copies in one RunTasks call and prints their ids (or the JSON answer). */
async function runCopies(
  io: Io,
  clients: ManagerClients,
  request: TaskFile,
  opts: RunOptions,
): Promise<void> {
  const json = outputFormat(opts) === "json";
  const answer = await clients.tasks.runTasks(
    // The table prints ids only: the specs just sent need not come back.
    { requests: taskCopies(request, opts.count), view: json ? TaskView.FULL : TaskView.BASIC },
    { timeoutMs: CALL_TIMEOUT_MS },
  );
  if (json) {
    io.stdout.write(`${JSON.stringify(toJson(RunTasksResponseSchema, answer), null, 2)}\n`);
  } else {
    io.stdout.write(answer.tasks.map((task) => `${task.id}\n`).join(""));
  }
}

async function taskRequest(
  image: string | undefined,
  args: string[],
  opts: RunOptions,
): Promise<TaskFile> {
  if (opts.file !== undefined) {
    const mixed = givenSpecFlags(opts);
    if (image !== undefined) mixed.unshift("IMAGE");
    if (mixed.length > 0) {
      throw usageError(`-f cannot be combined with ${mixed.join(", ")}: put them in the file`);
    }
    const text = await readSpecFile(opts.file);
    let file: TaskFile;
    try {
      file = parseTaskFile(text, opts.file === "-" ? "stdin" : opts.file);
    } catch (error) {
      throw usageError((error as Error).message);
    }
    const id = opts.id ?? file.id;
    return id ? { spec: file.spec, id } : { spec: file.spec };
  }
  if (image === undefined) throw usageError("missing IMAGE (or -f task.yaml)");
  try {
    const spec = buildSpec(image, args, opts);
    return opts.id ? { spec, id: opts.id } : { spec };
  } catch (error) {
    throw usageError((error as Error).message);
  }
}
