import { toJson } from "@bufbuild/protobuf";
import { Command } from "commander";
import { TaskEventSchema } from "../../gen/cube/v1/task_pb.js";
import {
  addClientOptions,
  arg,
  type ClientOptions,
  outputFormat,
  stoppedByUser,
  withManager,
} from "../client-options.js";
import { colorsFor } from "../colors.js";
import { eventLine } from "../format-event.js";
import type { Io } from "../io.js";
import { parseRevision } from "../parse-enum.js";
import { resolveTask } from "../resolve-task.js";

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
    .option("--task <task>", "only events of this task (id, unique id prefix, or name)")
    .option("--no-trunc", "show ids in full");
  addClientOptions(cmd)
    .addHelpText(
      "after",
      `
Each line: time, #revision, type (created, state, desired, progress, health), task id,
name, and what happened. With -o json, one TaskEvent (protobuf JSON mapping) per line.
--since N first replays the events after revision N, then follows: give the last #revision
you saw to carry on without a gap; --since 0 replays every event the manager still keeps.
The manager keeps only its latest events: from further back it refuses, naming the oldest.

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
  await withManager(io, opts, async (clients) => {
    const taskId = opts.task ? (await resolveTask(clients, opts.task)).id : "";
    try {
      for await (const { event } of clients.tasks.watchTasks(
        // after_revision 0 is the API's "only new events": --since 0 asks for the whole
        // history, which is its from_oldest.
        opts.since === 0n
          ? { fromOldest: true, taskId }
          : { afterRevision: opts.since ?? 0n, taskId },
        { signal: io.interrupted },
      )) {
        if (!event) continue;
        io.stdout.write(
          json
            ? `${JSON.stringify(toJson(TaskEventSchema, event))}\n`
            : `${eventLine(event, colors, !opts.trunc)}\n`,
        );
      }
    } catch (error) {
      if (!stoppedByUser(io, error)) throw error;
    }
  });
}
