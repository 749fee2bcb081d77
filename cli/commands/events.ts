import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Command } from "commander";
import { TaskEventSchema } from "../../gen/cube/v1/task_pb.js";
import { CliError } from "../cli-error.js";
import { CALL_TIMEOUT_MS } from "../client.js";
import {
  addClientOptions,
  arg,
  type ClientOptions,
  outputFormat,
  stoppedByUser,
  withManager,
} from "../client-options.js";
import { colorsFor } from "../colors.js";
import { EVENT_TYPE_NAMES, eventLine } from "../format-event.js";
import type { Io } from "../io.js";
import { parseRevision } from "../parse-enum.js";
import { followWatch } from "../reconnect.js";
import { parseTaskRef, resolveTask } from "../resolve-task.js";

interface EventsOptions extends ClientOptions {
  since?: bigint;
  task?: string;
  trunc: boolean;
}

/** `cube events`: the manager's event stream, live, one line (or JSON object) per event. */
export function eventsCommand(io: Io): Command {
  const cmd = new Command("events")
    .description("follow task events as the manager records them (Ctrl-C to stop)")
    .option(
      "--since <revision>",
      "first the events after this revision (0: all the manager keeps), then new ones (default: only new events)",
      arg(parseRevision),
    )
    .option(
      "--task <task>",
      "only events of this task (id, unique id prefix, or name)",
      arg(parseTaskRef),
    )
    .option("--no-trunc", "show ids in full");
  addClientOptions(cmd)
    .addHelpText(
      "after",
      `
Each line: time, #revision, type (${Object.values(EVENT_TYPE_NAMES).join(", ")}), task id,
name, and what happened. With -o json, one TaskEvent (protobuf JSON mapping) per line.
--since N first replays the events after revision N, then follows: give the last #revision
you saw to carry on without a gap; --since 0 replays every event the manager still keeps.
The manager keeps only its latest events: from further back it refuses, naming the oldest.

When the manager restarts (an upgrade, a crash), it says so on stderr and carries on after the
last event it printed (before any, from where it started), missing none and printing none
twice; if the manager no longer keeps them, it says that events may be missed and exits 1.

Examples:
  cube events
  cube events --task web
  cube events --since 1 -o json | jq -r .task.state`,
    )
    .action((opts: EventsOptions) => events(io, opts));
  return cmd;
}

async function events(io: Io, opts: EventsOptions): Promise<void> {
  const json = outputFormat(opts) === "json";
  const colors = colorsFor(io.stdout, io.env);
  const signal = io.interrupted;
  await withManager(io, opts, async (clients) => {
    try {
      const taskId =
        opts.task !== undefined ? (await resolveTask(clients, opts.task, signal)).id : "";
      // The revision printed last: the watch resumes after it when the manager comes back.
      // Until one is printed, where it started: --since N, else the revision of now, read
      // first (after_revision 0 is the API's "only new events", which would lose what
      // happened while the manager was away). 0 asks for the whole history, from_oldest.
      let last = opts.since;
      let printed = false;
      await followWatch(
        io,
        clients.address,
        signal,
        async (resumed) => {
          // A unary call first: its answer tells that the manager is there.
          const { revision } = await clients.tasks.listTasks(
            { pageSize: 1 },
            { timeoutMs: CALL_TIMEOUT_MS, signal },
          );
          last ??= revision;
          const from = last;
          const watch = clients.tasks.watchTasks(
            from === 0n ? { fromOldest: true, taskId } : { afterRevision: from, taskId },
            { signal },
          );
          if (!resumed) return watch;
          const where = printed ? "the last event printed" : "where this command started";
          return refusedResume(watch, clients.address, `revision ${from} (${where})`);
        },
        ({ event }) => {
          // After the last printed: never one twice, across a reconnect or otherwise.
          if (!event || (last !== undefined && last !== 0n && event.revision <= last)) return;
          last = event.revision;
          printed = true;
          io.stdout.write(
            json
              ? `${JSON.stringify(toJson(TaskEventSchema, event))}\n`
              : `${eventLine(event, colors, !opts.trunc)}\n`,
          );
        },
      );
    } catch (error) {
      if (!stoppedByUser(io, error)) throw error;
    }
  });
}

/**
 * The watch resumed after `from` (a revision, in words), whose refusal (OUT_OF_RANGE: the
 * manager no longer keeps the events after it, or came back with an older history) ends the
 * command saying that events may be missed: it never skips them silently.
 */
async function* refusedResume<T>(
  watch: AsyncIterable<T>,
  address: string,
  from: string,
): AsyncGenerator<T> {
  try {
    yield* watch;
  } catch (error) {
    if (!(error instanceof ConnectError) || error.code !== Code.OutOfRange) throw error;
    throw new CliError(
      `the manager at ${address} cannot carry on after ${from}: ${error.rawMessage}. Events in between may be missed: start again with \`cube events\` (only new events) or \`cube events --since 0\` (all the manager keeps)`,
    );
  }
}
