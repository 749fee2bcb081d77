import { TaskEventType, TaskState } from "../../gen/cube/v1/task_pb.js";
import { AssignmentAction } from "../../gen/cube/v1/worker_service_pb.js";
import type { ControlPlane } from "../core/control-plane.js";
import { pending, scheduled } from "../core/lifecycle.js";
import type { TaskEntry } from "../core/task-table.js";
import type { WorkerEntry } from "../core/worker-table.js";
import type { Amounts, Placement, TaskRequest } from "../scheduler/types.js";

/**
 * Records the task SCHEDULED on `worker` with the next generation (a fresh attempt: no
 * container, ports, exit code or health yet) and pushes the RUN assignment to it.
 */
export function assignAttempt(
  cp: ControlPlane,
  entry: TaskEntry,
  worker: WorkerEntry,
  restartCount: number,
  message: string,
): void {
  const after = cp.change(
    entry,
    scheduled(entry.task, worker.id, restartCount, cp.clock.now()),
    TaskEventType.STATE_CHANGED,
    message,
  );
  cp.assign(worker, AssignmentAction.RUN, after);
}

/** How {@link place} should treat a placement. */
export interface PlaceOptions {
  /** Workers not to use (the one a task is moved away from). */
  avoid?: ReadonlySet<string>;
  /**
   * Counts as a restart (restart_count + 1, placed or not): a restart by the task's policy. A
   * move off a worker that went DOWN is not one.
   */
  restart?: boolean;
  /** Event message when placed; default "scheduled on <worker>". */
  placedMessage?: (worker: WorkerEntry) => string;
  /** Put before the scheduler's reason when nothing fits ("worker w1 is DOWN; "). */
  reasonPrefix?: string;
}

/** What the scheduler is asked for `entry`: its request, host ports and group placement. */
export function taskRequest(entry: TaskEntry, avoid?: ReadonlySet<string>): TaskRequest {
  return {
    id: entry.task.id,
    resources: entry.request,
    avoid,
    placement: entry.group?.placementOf(entry),
    hostPorts: entry.hostPorts,
  };
}

/**
 * Places one task now: SCHEDULED on the scheduler's pick with the next generation, and a RUN
 * assignment pushed to that worker; or PENDING with the scheduler's reason (updated in place
 * when it already was). Returns whether it was placed.
 */
export function place(cp: ControlPlane, entry: TaskEntry, options: PlaceOptions = {}): boolean {
  const task = entry.task;
  const plan = cp.placer.plan(
    taskRequest(entry, options.avoid),
    cp.workers.views(),
    cp.clock.now(),
  );
  const restartCount = task.restartCount + (options.restart ? 1 : 0);
  if (plan.kind === "place") {
    const worker = cp.workers.get(plan.nodeId);
    if (!worker) throw new Error(`scheduler picked unknown worker ${plan.nodeId}`);
    assignAttempt(
      cp,
      entry,
      worker,
      restartCount,
      options.placedMessage?.(worker) ?? `scheduled on ${worker.label}`,
    );
    return true;
  }
  const reason = `${options.reasonPrefix ?? ""}${plan.reason}`;
  if (task.state !== TaskState.PENDING) {
    cp.change(entry, pending(reason, restartCount), TaskEventType.STATE_CHANGED, reason);
  } else if (task.reason !== reason) {
    cp.touch(entry, { reason });
  }
  return false;
}

/**
 * Places a task just accepted. When a pending pass is queued (capacity just appeared), the
 * task waits its turn in the queue, behind older pending tasks.
 */
export function placeNew(cp: ControlPlane, entry: TaskEntry): void {
  if (!cp.passQueued) place(cp, entry);
}

/** How many different requests may fail in one pass before it stops (bounds its cost). */
const MAX_FAILED_SHAPES = 64;

/**
 * Tries the PENDING tasks in FIFO order, placing what fits. A task asking at least as much as
 * one that already failed in this pass is skipped without asking the scheduler (it cannot
 * fit either: placements only consume capacity), so a long queue of similar tasks costs a
 * cheap comparison each. Runs only when capacity appeared (a worker joined, a task ended).
 */
export function pendingPass(cp: ControlPlane): void {
  if (cp.pending.size === 0) return;
  let anyReady = false;
  for (const view of cp.workers.views()) anyReady ||= view.ready;
  if (!anyReady) return;
  const failed: { request: Amounts; reason: string }[] = [];
  // A job's replica is not comparable by its request alone (constraints, its peers): one of a
  // placement that failed in this pass is skipped instead (placements only add peers).
  const failedPlacements = new Set<Placement>();
  for (const entry of cp.pending.values()) {
    if (entry.group) {
      const placement = entry.group.placementOf(entry);
      if (!failedPlacements.has(placement) && !place(cp, entry)) failedPlacements.add(placement);
      continue;
    }
    // Nor is a task publishing fixed host ports: it may fail for a port, not for its request.
    if (entry.hostPorts) {
      place(cp, entry);
      continue;
    }
    const covering = failed.find((f) => covers(entry.request, f.request));
    if (covering) {
      // The same request fails for the same reason: keep what people read current.
      if (same(entry.request, covering.request) && entry.task.reason !== covering.reason) {
        cp.touch(entry, { reason: covering.reason });
      }
      continue;
    }
    if (!place(cp, entry)) {
      failed.push({ request: entry.request, reason: entry.task.reason });
      if (failed.length >= MAX_FAILED_SHAPES) break;
    }
  }
}

function same(a: Amounts, b: Amounts): boolean {
  return a.cpu === b.cpu && a.memoryBytes === b.memoryBytes && a.diskBytes === b.diskBytes;
}

/** Whether `a` asks at least as much as `b` in every dimension. */
function covers(a: Amounts, b: Amounts): boolean {
  return a.cpu >= b.cpu && a.memoryBytes >= b.memoryBytes && a.diskBytes >= b.diskBytes;
}
