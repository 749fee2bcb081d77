import type { NodeMetrics, TaskMetrics } from "../../gen/cube/v1/metrics_pb.js";
import type { Stats } from "../../gen/cube/v1/worker_service_pb.js";
import type { WorkerEntry } from "../core/worker-table.js";
import { CONTAINER_ID_LIMIT, workerText } from "./task-updates.js";

/** Logical CPUs a node may say it has (Linux's largest NR_CPUS). */
export const MAX_CPU_COUNT = 8192;

/** A sample's number as kept: a finite number from 0 to `max`; NaN, ±∞ and negatives are 0. */
function bounded(n: number, max: number): number {
  if (!Number.isFinite(n) || n <= 0) return 0;
  return Math.min(n, max);
}

/**
 * A worker's metrics sample (a `stats` message) as the manager keeps it. A worker speaks for
 * itself and for the tasks it holds, nobody else:
 *
 * - the node's `worker_id` is the stream's worker, whatever the sample says;
 * - task samples are kept only for tasks placed on this worker now (SCHEDULED or RUNNING
 *   here, so at their current generation: a sample carries none), one per task, the last
 *   one sent winning; so there are never more than the tasks it holds, and a sample of
 *   another worker's task, or of a task it no longer holds, is dropped;
 * - each task sample's `worker_id` is the stream's worker, and its container id is kept as
 *   worker text is (escaped, at most 128 characters);
 * - numbers are clamped: NaN, infinities and negatives are 0; the node's `cpu_count` is at
 *   most {@link MAX_CPU_COUNT}, its `cpu_percent` (of all CPUs together) at most 100, its
 *   load averages at most 1,000 per CPU; a task's `cpu_percent` (of one core) at most 100
 *   times the node's CPUs (its `cpu_count`, else its declared capacity, at least one).
 *   Byte counts are unsigned and left as they are.
 *
 * Undefined when the sample has no node part (nothing to keep, as before).
 */
export function workerStats(
  worker: WorkerEntry,
  stats: Stats,
): { node: NodeMetrics; tasks: TaskMetrics[] } | undefined {
  const sent = stats.node;
  if (!sent) return undefined;
  const cpuCount = Math.min(sent.cpuCount, MAX_CPU_COUNT);
  const cores = Math.max(1, cpuCount || Math.ceil(worker.record.capacity?.cpu ?? 0));
  const node: NodeMetrics = {
    ...sent,
    workerId: worker.id,
    cpuCount,
    cpuPercent: bounded(sent.cpuPercent, 100),
    load1: bounded(sent.load1, 1000 * cores),
    load5: bounded(sent.load5, 1000 * cores),
    load15: bounded(sent.load15, 1000 * cores),
  };
  const byTask = new Map<string, TaskMetrics>();
  for (const t of stats.tasks) {
    if (!worker.tasks.has(t.taskId)) continue;
    byTask.set(t.taskId, {
      ...t,
      workerId: worker.id,
      containerId: workerText(t.containerId, CONTAINER_ID_LIMIT),
      cpuPercent: bounded(t.cpuPercent, 100 * cores),
    });
  }
  return { node, tasks: [...byTask.values()] };
}
