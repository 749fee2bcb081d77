import { toJson } from "@bufbuild/protobuf";
import { Command } from "commander";
import { type Task, TaskEventType, TaskSchema } from "../../gen/cube/v1/task_pb.js";
import {
  addClientOptions,
  arg,
  type ClientOptions,
  collect,
  outputFormat,
  stoppedByUser,
  withManager,
} from "../client-options.js";
import { colorsFor } from "../colors.js";
import { renderTable } from "../format-table.js";
import { TASK_HEAD, TASK_WIDTHS, taskRow } from "../format-task.js";
import type { Io } from "../io.js";
import { LiveTable } from "../live-table.js";
import { parseStates } from "../parse-enum.js";
import { parseKeyValue, toRecord } from "../parse-key-value.js";
import { followWatch } from "../reconnect.js";
import { listAllTasks } from "../resolve-task.js";
import { matchesFilter, type TaskFilter } from "../task-filter.js";
import { workerIdFor, workerNames } from "../worker-names.js";

interface PsOptions extends ClientOptions {
  state?: number[][];
  worker?: string;
  name?: string;
  label?: [string, string][];
  watch?: boolean;
  trunc: boolean;
}

/** `cube ps` (alias `status`): the tasks, as a table or JSON, once or following changes. */
export function psCommand(io: Io): Command {
  const cmd = new Command("ps")
    .alias("status")
    .description("list tasks")
    .option(
      "--state <states>",
      "only tasks in these states (pending, scheduled, running, completed, failed, unknown; comma-separated or repeated)",
      collect(parseStates),
    )
    .option("--worker <name|id>", "only tasks on this worker", nonBlank("--worker"))
    .option("--name <name>", "only tasks with this name", nonBlank("--name"))
    .option(
      "--label <key=value>",
      "only tasks with this label (repeatable)",
      collect((s) => parseKeyValue(s, "label")),
    )
    .option("-w, --watch", "keep the list up to date as tasks change (streamed, not polled)")
    .option("--no-trunc", "show ids in full");
  addClientOptions(cmd)
    .addHelpText(
      "after",
      `
--watch carries on when the manager restarts (an upgrade, a crash): it says so on stderr,
reads the list again and follows on from there.

Examples:
  cube ps
  cube ps --state running,pending
  cube ps --label app=web -o json | jq '.tasks[].id'
  cube ps --watch`,
    )
    .action((opts: PsOptions) => ps(io, opts));
  return cmd;
}

async function ps(io: Io, opts: PsOptions): Promise<void> {
  const json = outputFormat(opts) === "json";
  const colors = colorsFor(io.stdout, io.env);
  await withManager(io, opts, async (clients) => {
    const names = await workerNames(clients);
    const filter: TaskFilter = {
      states: (opts.state ?? []).flat(),
      workerId: opts.worker ? workerIdFor(opts.worker, names) : "",
      name: opts.name ?? "",
      labels: toRecord(opts.label ?? []),
    };
    const row = (task: Task) =>
      taskRow(task, { now: io.now(), workerNames: names, colors, noTrunc: !opts.trunc });
    if (!opts.watch) {
      const { tasks, revision } = await listAllTasks(clients, filter);
      if (json) {
        const out = {
          tasks: tasks.map((t) => toJson(TaskSchema, t)),
          revision: revision.toString(),
        };
        io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      } else {
        io.stdout.write(renderTable(TASK_HEAD, tasks.map(row)));
      }
      return;
    }
    const signal = io.interrupted;
    const table = json ? undefined : new LiveTable(io, TASK_HEAD, row, TASK_WIDTHS);
    // With -o json, the revision of each task as last printed: after a reconnect, the tasks
    // listed again are printed only when they changed meanwhile.
    const printed = new Map<string, bigint>();
    const line = (task: Task) => {
      printed.set(task.id, task.revision);
      io.stdout.write(`${JSON.stringify(toJson(TaskSchema, task))}\n`);
    };
    const refreshNames = async () => {
      for (const [id, name] of await workerNames(clients)) names.set(id, name);
    };
    try {
      // The list, then the watch from its revision; after a reconnect the list again (tasks
      // changed or went away meanwhile), which the table takes as a whole.
      await followWatch(
        io,
        clients.address,
        signal,
        async (resumed) => {
          const { tasks, revision } = await listAllTasks(clients, filter, signal);
          if (resumed) await refreshNames();
          const entries = tasks.map((t): [string, Task] => [t.id, t]);
          if (table && !resumed) table.start(entries);
          else if (table) table.replace(entries);
          else for (const t of tasks) if ((printed.get(t.id) ?? -1n) < t.revision) line(t);
          return clients.tasks.watchTasks({ afterRevision: revision }, { signal });
        },
        async ({ event }) => {
          const task = event?.task;
          if (!task) return;
          // No longer in the filter, or gone (garbage collection): out of the table (-o json
          // prints a deleted task's last snapshot, as any event's).
          const gone = table !== undefined && event.type === TaskEventType.DELETED;
          if (gone || !matchesFilter(task, filter)) {
            table?.delete(task.id);
            return;
          }
          if (task.workerId !== "" && !names.has(task.workerId)) await refreshNames();
          if (table) table.set(task.id, task);
          else line(task);
        },
        (text) => table?.note(text),
      );
    } catch (error) {
      if (!stoppedByUser(io, error)) throw error;
    } finally {
      table?.close();
    }
  });
}

/**
 * A filter flag's parser refusing an empty value: `--worker "$W"` with W unset would
 * otherwise list every task as if unfiltered.
 */
function nonBlank(flag: string): (value: string) => string {
  return arg((value) => {
    if (value.trim() === "") {
      throw new Error(`${flag} must not be empty (leave it out to list all)`);
    }
    return value;
  });
}
