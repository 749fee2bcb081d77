import { once } from "node:events";
import { toJson } from "@bufbuild/protobuf";
import type { ConnectError } from "@connectrpc/connect";
import { Command } from "commander";
import { LogStream, TaskLogsResponseSchema } from "../../gen/cube/v1/task_service_pb.js";
import { CliError } from "../cli-error.js";
import {
  addClientOptions,
  arg,
  type ClientOptions,
  outputFormat,
  stoppedByUser,
  withManager,
} from "../client-options.js";
import { ExitCode } from "../exit-codes.js";
import type { Io } from "../io.js";
import { positiveCount } from "../parse-enum.js";
import { isTransient } from "../reconnect.js";
import { resolveTask } from "../resolve-task.js";

interface LogsOptions extends ClientOptions {
  follow?: boolean;
  tail?: number;
}

/**
 * Parses --tail: a whole number from 1. TaskLogs reads tail 0 as "the whole log", where docker
 * and kubectl users expect no line at all: refused rather than read either way.
 */
const parseTail = positiveCount(
  "0 would print the whole log (the API reads tail 0 as all lines): give 1 or more, or leave --tail out for the whole log",
);

/** `cube logs ID`: a task's container output; stdout to stdout, stderr to stderr. */
export function logsCommand(io: Io): Command {
  const cmd = new Command("logs")
    .description("print a task's output (stdout to stdout, stderr to stderr)")
    .argument("<task>", "task id, unique id prefix, or name")
    .option("-f, --follow", "keep printing new output until the task ends (or Ctrl-C)")
    .option("-n, --tail <lines>", "only the last N lines so far (N at least 1)", arg(parseTail));
  addClientOptions(cmd)
    .addHelpText(
      "after",
      `
Examples:
  cube logs web
  cube logs -f --tail 20 web
  cube logs web 2>/dev/null   # stdout only

With -o json: one TaskLogsResponse a line, on stdout (data in base64, stream, time).

-f does not resume when the manager restarts (a log can start again only from the whole of it
or its last N lines): it ends, exit 5, saying so and how to carry on.`,
    )
    .action((ref: string, opts: LogsOptions) => logs(io, ref, opts));
  return cmd;
}

async function logs(io: Io, ref: string, opts: LogsOptions): Promise<void> {
  await withManager(io, opts, async (clients) => {
    const task = await resolveTask(clients, ref);
    let received = false;
    try {
      for await (const chunk of clients.tasks.taskLogs(
        { id: task.id, follow: opts.follow ?? false, tail: opts.tail ?? 0 },
        { signal: io.interrupted },
      )) {
        received = true;
        const json = outputFormat(opts) === "json";
        const out = chunk.stream === LogStream.STDERR && !json ? io.stderr : io.stdout;
        const data = json
          ? `${JSON.stringify(toJson(TaskLogsResponseSchema, chunk))}\n`
          : chunk.data;
        // Respect back-pressure, or a slow pipe makes us buffer the whole log.
        if (!out.write(data)) await once(out, "drain");
      }
    } catch (error) {
      if (stoppedByUser(io, error)) return;
      if (received && isTransient(error))
        throw cutLog(error as ConnectError, task.id, clients.address, opts);
      throw error;
    }
  });
}

/**
 * A log stream that broke after it printed something (the manager restarted, or the worker
 * it reads from went away). It is not opened again: TaskLogs can start only from the whole
 * log or its last N lines, and its chunks carry the time they were read, not written, so
 * no second stream could carry on where this one stopped, without repeating or missing
 * lines. Said so, with the command to carry on.
 */
function cutLog(error: ConnectError, id: string, address: string, opts: LogsOptions): CliError {
  const what = error.metadata.has("grpc-status")
    ? `the log stream of task ${id} ended: ${error.rawMessage}`
    : `lost the connection to the manager at ${address} while reading the logs of task ${id} (${error.rawMessage})`;
  const again = opts.follow
    ? `\`cube logs -f --tail 20 ${id}\` carries on (a log stream cannot resume where it stopped: lines may repeat, or be missed beyond the last 20)`
    : `\`cube logs ${id}\` reads it again`;
  return new CliError(`${what}; ${again}`, ExitCode.Unreachable);
}
