import { toJson } from "@bufbuild/protobuf";
import { Command } from "commander";
import { stringify } from "yaml";
import { type TaskEvent, TaskEventSchema, TaskSchema } from "../../gen/cube/v1/task_pb.js";
import { printableJson } from "../../lib/printable-text.js";
import { CALL_TIMEOUT_MS, type ManagerClients } from "../client.js";
import {
  addClientOptions,
  arg,
  type ClientOptions,
  outputFormat,
  withManager,
} from "../client-options.js";
import { colorsFor } from "../colors.js";
import { eventLine } from "../format-event.js";
import type { Io } from "../io.js";
import { parseTaskRef, resolveTask } from "../resolve-task.js";

/** `cube inspect ID`: the whole task, as the manager holds it, with its history. */
export function inspectCommand(io: Io): Command {
  const cmd = new Command("inspect")
    .description("show a task in full, with its events")
    .argument("<task>", "task id, unique id prefix, or name", arg(parseTaskRef));
  addClientOptions(cmd)
    .addHelpText(
      "after",
      `
The task is shown as YAML (the protobuf JSON mapping of Task), then its events, oldest
first; control and bidirectional characters in its text show escaped, as \u001b. With
-o json: {"task": {...}, "events": [...]}, the same mapping as grpcurl shows, exact.

Examples:
  cube inspect web
  cube inspect 3f2a9c01 -o json | jq .task.ports`,
    )
    .action((ref: string, opts: ClientOptions) => inspect(io, ref, opts));
  return cmd;
}

async function inspect(io: Io, ref: string, opts: ClientOptions): Promise<void> {
  await withManager(io, opts, async (clients) => {
    const task = await resolveTask(clients, ref);
    const events = await allEvents(clients, task.id);
    const taskJson = toJson(TaskSchema, task);
    if (outputFormat(opts) === "json") {
      const out = { task: taskJson, events: events.map((e) => toJson(TaskEventSchema, e)) };
      io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      return;
    }
    const colors = colorsFor(io.stdout, io.env);
    const history = events.map((e) => `  ${eventLine(e, colors, true)}\n`).join("");
    // Reasons and messages may quote a worker, Docker or a registry: nothing in them may reach
    // the terminal as an instruction (events are escaped by eventLine).
    io.stdout.write(`${stringify(printableJson(taskJson))}events:\n${history || "  (none)\n"}`);
  });
}

async function allEvents(clients: ManagerClients, taskId: string): Promise<TaskEvent[]> {
  const events: TaskEvent[] = [];
  let pageToken = "";
  do {
    const page = await clients.tasks.listTaskEvents(
      { taskId, pageSize: 1000, pageToken },
      { timeoutMs: CALL_TIMEOUT_MS },
    );
    events.push(...page.events);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return events;
}
