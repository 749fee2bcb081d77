import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Task } from "../../gen/cube/v1/task_pb.js";
import { formatDuration } from "../../lib/format-ms.js";
import { isFinished } from "../../lib/task-state.js";
import type { ControlPlane } from "../core/control-plane.js";
import { jobOf } from "../core/job-table.js";
import type { TaskEntry } from "../core/task-table.js";

/** What garbage collection keeps (ManagerOptions `taskGcAfterMs`, `jobTaskHistory`). */
export interface TaskGcPolicy {
  /** An ended task goes this long after it ended; 0 never by age. */
  readonly afterMs: number;
  /** Ended replicas kept per job, newest first, whatever their age; more go at once. */
  readonly jobHistory: number;
  /** Most tasks removed by one sweep; the rest wait for the next (bounded event bursts). */
  readonly maxPerSweep: number;
}

/** One task as garbage collection sees it. */
export interface GcTask {
  readonly task: Task;
  readonly createdRevision: bigint;
  /** A restart is waiting out its back-off: the task is not done. */
  readonly restartPending: boolean;
  /** Still one of its job's replicas (counted and reconciled by it): not done. */
  readonly member: boolean;
}

/** A task to remove, and why (the DELETED event's words). */
export interface GcDecision {
  readonly id: string;
  readonly why: string;
}

/**
 * Which tasks to remove now, a pure function of a read-only view (Nomad's core GC): only a
 * task that ended for good — COMPLETED or FAILED, no restart pending, no longer one of its
 * job's replicas — and then one past its job's history (its `jobHistory` newest ended
 * replicas are kept) or that ended more than `afterMs` ago. Oldest first, at most
 * `maxPerSweep`.
 */
export function planTaskGc(
  tasks: Iterable<GcTask>,
  nowMs: number,
  policy: TaskGcPolicy,
): GcDecision[] {
  const out: { createdRevision: bigint; id: string; why: string }[] = [];
  const byJob = new Map<string, GcTask[]>();
  for (const t of tasks) {
    if (!isFinished(t.task.state) || t.restartPending || t.member) continue;
    const job = jobOf(t.task)?.name;
    if (job === undefined) {
      const why = aged(t.task, nowMs, policy.afterMs);
      if (why) out.push({ createdRevision: t.createdRevision, id: t.task.id, why });
      continue;
    }
    const list = byJob.get(job);
    if (list) list.push(t);
    else byJob.set(job, [t]);
  }
  for (const [job, list] of byJob) {
    list.sort((a, b) => (a.createdRevision > b.createdRevision ? -1 : 1));
    for (const [i, t] of list.entries()) {
      const why =
        i >= policy.jobHistory
          ? `garbage collected: job ${job} keeps its ${policy.jobHistory} newest ended replicas`
          : aged(t.task, nowMs, policy.afterMs);
      if (why) out.push({ createdRevision: t.createdRevision, id: t.task.id, why });
    }
  }
  out.sort((a, b) => (a.createdRevision < b.createdRevision ? -1 : 1));
  return out.slice(0, policy.maxPerSweep).map(({ id, why }) => ({ id, why }));
}

function aged(task: Task, nowMs: number, afterMs: number): string | undefined {
  // Every way into COMPLETED or FAILED stamps finished_at (core/lifecycle.ts).
  if (afterMs <= 0 || !task.finishedAt) return undefined;
  const endedMs = timestampMs(task.finishedAt);
  if (nowMs - endedMs < afterMs) return undefined;
  return `garbage collected: ended ${formatDuration(nowMs - endedMs)} ago (--task-gc-after ${formatDuration(afterMs)})`;
}

/**
 * What a NOT_FOUND for a task adds while garbage collection runs: the id may be one that
 * ended and was removed, not a mistyped one.
 */
export function gcHint(afterMs: number): string {
  return afterMs > 0 ? ` (ended tasks are removed ${formatDuration(afterMs)} after they end)` : "";
}

/** How often the sweeps run: this one, then the workers' (rules/node-gc.ts; rules/index.ts). */
export const TASK_GC_INTERVAL_MS = 60_000;

/** One sweep: removes what {@link planTaskGc} says, through ControlPlane.deleteTasks. */
export function sweepTasks(cp: ControlPlane): number {
  const view = (entry: TaskEntry): GcTask => ({
    task: entry.task,
    createdRevision: entry.createdRevision,
    restartPending: entry.restartTimer !== undefined,
    member: entry.group !== undefined,
  });
  const plan = planTaskGc(cp.tasks.all().map(view), cp.clock.now(), {
    afterMs: cp.options.taskGcAfterMs,
    jobHistory: cp.options.jobTaskHistory,
    maxPerSweep: 1000,
  });
  const removals: { entry: TaskEntry; message: string }[] = [];
  for (const { id, why } of plan) {
    const entry = cp.tasks.get(id);
    if (entry) removals.push({ entry, message: why });
  }
  cp.deleteTasks(removals);
  if (plan.length > 0) {
    cp.logger.info({ tasks: plan.length }, "garbage collected ended tasks");
  }
  return plan.length;
}
