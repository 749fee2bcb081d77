import { toJson } from "@bufbuild/protobuf";
import { Command } from "commander";
import { type Worker, WorkerSchema } from "../../gen/cube/v1/worker_pb.js";
import { CALL_TIMEOUT_MS } from "../client.js";
import {
  addClientOptions,
  type ClientOptions,
  outputFormat,
  stoppedByUser,
  withManager,
} from "../client-options.js";
import { colorsFor } from "../colors.js";
import { renderTable } from "../format-table.js";
import { WORKER_HEAD, WORKER_WIDTHS, workerRow } from "../format-worker.js";
import type { Io } from "../io.js";
import { LiveTable } from "../live-table.js";
import { followWatch } from "../reconnect.js";

interface NodesOptions extends ClientOptions {
  watch?: boolean;
  trunc: boolean;
}

/** `cube nodes`: the workers the manager knows, DOWN ones included. */
export function nodesCommand(io: Io): Command {
  const cmd = new Command("nodes")
    .description("list workers (CPU, MEMORY and DISK read allocated/capacity)")
    .option("-w, --watch", "keep the list up to date as workers change (streamed, not polled)")
    .option("--no-trunc", "show ids in full");
  addClientOptions(cmd)
    .addHelpText(
      "after",
      `
--watch carries on when the manager restarts (an upgrade, a crash): it says so on stderr,
reads the list again and follows on from there. A worker removed (cube node rm) leaves the
table; with -o json it is printed once more with "removed": true.

Examples:
  cube nodes
  cube nodes -o json | jq -r '.workers[] | select(.status == "WORKER_STATUS_READY") | .name'
  cube nodes --watch`,
    )
    .action((opts: NodesOptions) => nodes(io, opts));
  return cmd;
}

async function nodes(io: Io, opts: NodesOptions): Promise<void> {
  const json = outputFormat(opts) === "json";
  const colors = colorsFor(io.stdout, io.env);
  const row = (w: Worker) => workerRow(w, { now: io.now(), colors, noTrunc: !opts.trunc });
  await withManager(io, opts, async (clients) => {
    if (!opts.watch) {
      const { workers } = await clients.workers.listWorkers({}, { timeoutMs: CALL_TIMEOUT_MS });
      if (json) {
        const out = { workers: workers.map((w) => toJson(WorkerSchema, w)) };
        io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      } else {
        io.stdout.write(renderTable(WORKER_HEAD, workers.map(row)));
      }
      return;
    }
    // The list first, so the table starts whole; the watch then repeats each worker as
    // it is (LiveTable skips rows that did not change) and follows changes. After a
    // reconnect the same: the list again (workers that went away meanwhile leave the table),
    // then the watch.
    const signal = io.interrupted;
    const table = json ? undefined : new LiveTable(io, WORKER_HEAD, row, WORKER_WIDTHS);
    try {
      await followWatch(
        io,
        clients.address,
        signal,
        async (resumed) => {
          const { workers } = await clients.workers.listWorkers(
            {},
            { timeoutMs: CALL_TIMEOUT_MS, signal },
          );
          const entries = workers.map((w): [string, Worker] => [w.id, w]);
          if (resumed) table?.replace(entries);
          else table?.start(entries);
          return clients.workers.watchWorkers({}, { signal });
        },
        ({ worker, removed }) => {
          if (!worker) return;
          if (table) {
            // Forgotten (cube node rm): its row goes.
            if (removed) table.delete(worker.id);
            else table.set(worker.id, worker);
          } else {
            const json = toJson(WorkerSchema, worker);
            io.stdout.write(
              `${JSON.stringify(removed ? { ...(json as object), removed } : json)}\n`,
            );
          }
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
