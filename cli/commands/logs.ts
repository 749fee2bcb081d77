import { once } from "node:events";
import { toJson } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { Command } from "commander";
import type { Task } from "../../gen/cube/v1/task_pb.js";
import {
  LogStream,
  type TaskLogsResponse,
  TaskLogsResponseSchema,
} from "../../gen/cube/v1/task_service_pb.js";
import { LogResume } from "../../lib/log-resume.js";
import { formatRfc3339Nano } from "../../lib/log-time.js";
import { sleep } from "../../lib/sleep.js";
import { isFinished, stateName } from "../../lib/task-state.js";
import { CliError } from "../cli-error.js";
import { CALL_TIMEOUT_MS, type ManagerClients } from "../client.js";
import {
  addClientOptions,
  arg,
  type ClientOptions,
  outputFormat,
  stoppedByUser,
  withManager,
} from "../client-options.js";
import { describeError, serverSent } from "../describe-error.js";
import { ExitCode } from "../exit-codes.js";
import type { Io } from "../io.js";
import { positiveCount } from "../parse-enum.js";
import { backLine, isTransient, lostLine } from "../reconnect.js";
import { parseTaskRef, resolveTask } from "../resolve-task.js";
import { parseSince, type SinceFlag, sinceTimestamp } from "../since-flag.js";

interface LogsOptions extends ClientOptions {
  follow?: boolean;
  tail?: number;
  since?: SinceFlag;
}

/**
 * Parses --tail: a whole number from 1. TaskLogs reads tail 0 as "the whole log", where docker
 * and kubectl users expect no line at all: refused rather than read either way.
 */
const parseTail = positiveCount(
  "0 would print the whole log (the API reads tail 0 as all lines): give 1 or more, or leave --tail out for the whole log",
);

/** Between two tries to open a cut log again, as the watches of cli/reconnect.ts wait. */
const RETRY_MS = 500;

/** `cube logs ID`: a task's container output; stdout to stdout, stderr to stderr. */
export function logsCommand(io: Io): Command {
  const cmd = new Command("logs")
    .description("print a task's output (stdout to stdout, stderr to stderr)")
    .argument("<task>", "task id, unique id prefix, or name", arg(parseTaskRef))
    .option(
      "-f, --follow",
      "keep printing new output until the container ends (or Ctrl-C), through restarts of the manager",
    )
    .option("-n, --tail <lines>", "only the last N lines so far (N at least 1)", arg(parseTail))
    .option(
      "--since <when>",
      "only output written since then: a duration back from now (10m, 1h30m) or an RFC 3339 time with its zone (2026-12-06T20:00:00Z)",
      arg(parseSince),
    );
  addClientOptions(cmd)
    .addHelpText(
      "after",
      `
Examples:
  cube logs web
  cube logs -f --tail 20 web
  cube logs --since 10m web
  cube logs -f --since 2026-12-06T20:00:00Z web
  cube logs web 2>/dev/null   # stdout only

With -o json: one TaskLogsResponse a line, on stdout (data in base64, stream, and time: when
the container wrote it).

-f carries on through a restart of the manager (or of the task's worker): it says so on
stderr, tries again every 500 ms, and goes on from the last line printed, with no line
printed twice or missed. If the task was started again meanwhile (a restart, a move: a new
container, whose log is another one), or ended on a worker that cannot be reached, it ends
with an error saying so.`,
    )
    .action((ref: string, opts: LogsOptions) => logs(io, ref, opts));
  return cmd;
}

async function logs(io: Io, ref: string, opts: LogsOptions): Promise<void> {
  await withManager(io, opts, async (clients) => {
    const task = await resolveTask(clients, ref, io.interrupted);
    const json = outputFormat(opts) === "json";
    const since = opts.since && sinceTimestamp(opts.since, io.now());
    const resume = new LogResume(since);
    const print = async (chunk: TaskLogsResponse) => {
      // The engine's own notes (stream UNSPECIFIED) are not the container's stdout.
      const out = chunk.stream === LogStream.STDOUT || json ? io.stdout : io.stderr;
      const data = json ? `${JSON.stringify(toJson(TaskLogsResponseSchema, chunk))}\n` : chunk.data;
      // Respect back-pressure, or a slow pipe makes us buffer the whole log.
      if (!out.write(data)) await once(out, "drain");
    };
    const follower = new Follower(io, clients, task);
    let reopened = false;
    for (;;) {
      const request = resume.since
        ? { id: task.id, follow: true, tail: 0, since: resume.since }
        : { id: task.id, follow: opts.follow ?? false, tail: opts.tail ?? 0, since };
      let received = false;
      try {
        for await (const chunk of clients.tasks.taskLogs(request, { signal: io.interrupted })) {
          received = true;
          follower.reading();
          if (resume.take(chunk)) await print(chunk);
        }
        // The container ended (with -f), or all of it was read.
        return;
      } catch (error) {
        if (stoppedByUser(io, error)) return;
        if (!(error instanceof ConnectError) || !isTransient(error) || !clients.answered()) {
          // Opened again, and refused (the container gone meanwhile, the task removed).
          throw reopened ? follower.ended(error, resume.latest) : error;
        }
        if (!opts.follow) {
          if (received) throw cutLog(error, task.id, clients.address);
          throw error;
        }
        // -f, cut as a restart of the manager or of the worker explains: open it again once
        // the manager answers and the task still runs the container followed.
        if (!(await follower.waitToReopen(error, resume.latest))) return;
        resume.reopen();
        reopened = true;
      }
    }
  });
}

/** Whether a cut came from the manager about the task's worker (DOWN, or unreachable). */
function workerTrouble(error: ConnectError): boolean {
  return (
    error.code === Code.Unavailable && serverSent(error) && error.rawMessage.startsWith("worker ")
  );
}

/**
 * The lines a followed log prints on stderr while it cannot be read, and the checks before it
 * is opened again.
 */
class Follower {
  /** What is being waited for and has been said: the manager, or the task's worker. */
  #away: "manager" | "worker" | undefined;
  /** The container followed ("" until known). */
  #container: string;

  constructor(
    readonly io: Io,
    readonly clients: ManagerClients,
    readonly task: Task,
  ) {
    this.#container = task.containerId;
  }

  /** A chunk came: a worker that could not be read can be again. */
  reading(): void {
    if (this.#away !== "worker") return;
    this.#away = undefined;
    this.io.stderr.write(`reading the logs of task ${this.task.id} again\n`);
  }

  /**
   * Says why the log was cut (once a cut), then waits until the manager answers GetTask and the
   * task runs the container followed. Resolves true to open the log again, false on Ctrl-C;
   * throws a CliError when the log cannot go on (the task was started again in another
   * container, whose log is another one; it ended on a worker out of reach, or without its
   * container; it is gone) or the manager refuses (a token no longer known).
   */
  async waitToReopen(cut: ConnectError, shown: Timestamp | undefined): Promise<boolean> {
    const { io, clients, task } = this;
    let last = cut;
    this.#note(last);
    for (;;) {
      await sleep(RETRY_MS, io.interrupted);
      if (io.interrupted.aborted) return false;
      let now: Task | undefined;
      try {
        now = (
          await clients.tasks.getTask(
            { id: task.id },
            { timeoutMs: CALL_TIMEOUT_MS, signal: io.interrupted },
          )
        ).task;
      } catch (error) {
        if (stoppedByUser(io, error)) return false;
        if (!(error instanceof ConnectError) || !isTransient(error)) {
          throw this.ended(error, shown);
        }
        last = error;
        this.#note(last);
        continue;
      }
      if (this.#away === "manager") {
        this.#away = undefined;
        io.stderr.write(`${backLine(clients.address)}\n`);
      }
      if (!now) throw this.ended(new Error(`the manager did not return task ${task.id}`), shown);
      const after = shown ? ` after ${formatRfc3339Nano(shown)}` : "";
      // The container the log was opened on: the one GetTask gave before, or, if it had none
      // yet (the task was starting), the one its generation got since.
      this.#container ||= now.generation === task.generation ? now.containerId : "";
      if (now.containerId && now.containerId !== this.#container) {
        throw new CliError(
          `task ${task.id} was started again (generation ${now.generation}, in a new container) while its logs could not be read: the log followed ends with its container, and what that wrote${after} may be missing; \`cube logs -f ${task.id}\` follows the new one`,
          ExitCode.Error,
        );
      }
      if (isFinished(now.state) && (!now.containerId || workerTrouble(last))) {
        throw new CliError(
          `task ${task.id} has ended (${stateName(now.state)}) and its logs cannot be read${workerTrouble(last) ? `: ${last.rawMessage}` : ""}; what its container wrote${after} may be missing`,
          ExitCode.Unreachable,
        );
      }
      // No container now: the task is being moved off a worker that went DOWN, and that worker
      // may yet come back with the container followed (a restarted agent keeps its
      // containers). Wait for whichever comes: the container followed, or a new one.
      if (!now.containerId) continue;
      return true;
    }
  }

  /**
   * The CliError a follow ends with when, after a cut, the manager refuses to go on (NOT_FOUND:
   * the task or its container is gone; a token refused): its words, and what may be missing.
   */
  ended(error: unknown, shown: Timestamp | undefined): CliError {
    const described = describeError(error, this.clients.address, undefined, true);
    const after = shown ? ` after ${formatRfc3339Nano(shown)}` : "";
    return new CliError(
      `${described.message} (following the logs of task ${this.task.id}: what its container wrote${after} may be missing)`,
      described.exitCode,
    );
  }

  /** Says once why the log cannot be read now, and that it is tried again. */
  #note(error: ConnectError): void {
    const away = workerTrouble(error) ? "worker" : "manager";
    if (this.#away === away) return;
    // The manager back but the worker not (yet): the manager said it, in its own words.
    this.#away = away;
    this.io.stderr.write(
      away === "manager"
        ? `${lostLine(this.clients.address)}\n`
        : `cannot read the logs of task ${this.task.id} for now: ${error.rawMessage}; trying again…\n`,
    );
  }
}

/**
 * A one-shot read (no -f) that broke after it printed something (the manager restarted, or
 * the worker it reads from went away): not opened again, said so, with the command to read
 * it again (-f carries on by itself).
 */
function cutLog(error: ConnectError, id: string, address: string): CliError {
  const what = serverSent(error)
    ? `the log stream of task ${id} ended: ${error.rawMessage}`
    : `lost the connection to the manager at ${address} while reading the logs of task ${id} (${error.rawMessage})`;
  return new CliError(`${what}; \`cube logs ${id}\` reads it again`, ExitCode.Unreachable);
}
