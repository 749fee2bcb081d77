/**
 * Garbage collection of workers gone for good (Nomad's node GC, `node_gc_threshold`): a
 * worker DOWN for `nodeGcAfterMs` (24 h) and holding no task is removed as `cube node rm`
 * removes it (rules/node-ops.ts `forgetWorker`). Without it a worker retired without
 * `cube node rm` stayed DOWN for ever, in every list and every pending reason. It counts from
 * Worker.down_since, which the store keeps, so a manager restart does not start it over.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { WorkerStatus } from "../../gen/cube/v1/worker_pb.js";
import { formatDuration } from "../../lib/format-ms.js";
import type { ControlPlane } from "../core/control-plane.js";
import type { WorkerEntry } from "../core/worker-table.js";
import { forgetWorker } from "./node-ops.js";

/** What node garbage collection removes (ManagerOptions `nodeGcAfterMs`). */
export interface NodeGcPolicy {
  /** A DOWN worker goes this long after it went DOWN; 0 never. */
  readonly afterMs: number;
  /** Most workers removed by one sweep; the rest wait for the next. */
  readonly maxPerSweep: number;
}

/** One worker as node garbage collection sees it. */
export interface GcWorker {
  readonly id: string;
  readonly status: WorkerStatus;
  /** When it went DOWN (Worker.down_since), in ms since the epoch; undefined when not said. */
  readonly downSinceMs: number | undefined;
  /** Tasks it holds (SCHEDULED or RUNNING there): while any does, it stays. */
  readonly tasks: number;
}

/** A worker to remove, and why (the log line's words). */
export interface NodeGcDecision {
  readonly id: string;
  readonly why: string;
}

/**
 * Which workers to remove now, a pure function of a read-only view: only a DOWN one holding
 * no task (the rule of `cube node rm`), DOWN for `afterMs` or longer. Longest DOWN first, at
 * most `maxPerSweep`. READY and DISCONNECTED workers, and DOWN ones whose down_since is not
 * known, are kept.
 */
export function planNodeGc(
  workers: Iterable<GcWorker>,
  nowMs: number,
  policy: NodeGcPolicy,
): NodeGcDecision[] {
  if (policy.afterMs <= 0) return [];
  const due: { since: number; id: string }[] = [];
  for (const w of workers) {
    if (w.status !== WorkerStatus.DOWN || w.tasks > 0 || w.downSinceMs === undefined) continue;
    if (nowMs - w.downSinceMs >= policy.afterMs) due.push({ since: w.downSinceMs, id: w.id });
  }
  due.sort((a, b) => a.since - b.since);
  return due.slice(0, policy.maxPerSweep).map(({ since, id }) => ({
    id,
    why: `garbage collected: DOWN for ${formatDuration(nowMs - since)} (--node-gc-after ${formatDuration(policy.afterMs)})`,
  }));
}

/** Most workers one sweep removes: each is a WatchWorkers message to every watcher. */
export const NODE_GC_PER_SWEEP = 100;

/**
 * One sweep: removes what {@link planNodeGc} says through `forgetWorker`, the path of
 * RemoveNode. Runs with the task sweep (rules/index.ts), on the control plane's clock.
 */
export function sweepNodes(cp: ControlPlane): number {
  const view = (w: WorkerEntry): GcWorker => ({
    id: w.id,
    status: w.status,
    downSinceMs: w.record.downSince ? timestampMs(w.record.downSince) : undefined,
    tasks: w.tasks.size,
  });
  const plan = planNodeGc([...cp.workers.all()].map(view), cp.clock.now(), {
    afterMs: cp.options.nodeGcAfterMs,
    maxPerSweep: NODE_GC_PER_SWEEP,
  });
  for (const { id, why } of plan) {
    const w = cp.workers.get(id);
    if (w) forgetWorker(cp, w, why);
  }
  return plan.length;
}
