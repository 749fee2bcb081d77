import { DesiredState, HealthStatus, type Task, TaskState } from "../../gen/cube/v1/task_pb.js";
import type { InventoryItem } from "../../gen/cube/v1/worker_service_pb.js";
import { holdsResources, isFinished, stateName } from "../../lib/task-state.js";

/** A copy the worker holds, with why it is kept or stopped (words for the task's events). */
export interface CopyDecision {
  readonly item: InventoryItem;
  /** Why, in words: "the replacement is RUNNING and healthy", "no replacement runs yet (PENDING)". */
  readonly because: string;
}

/** What the manager must do after reading a worker's inventory. */
export interface ReconcileActions {
  /** Items the worker must stop and remove: unknown tasks, stale copies, stopped tasks. */
  readonly stop: InventoryItem[];
  /** Ids of tasks placed on the worker that it does not hold (at this generation): send RUN again. */
  readonly run: string[];
  /** Ids of tasks the worker holds at their current generation (their RUN arrived). */
  readonly current: string[];
  /**
   * Items of tasks UNKNOWN on this worker at the item's generation: contact is back, and the
   * task returns to the item's state (one that ended meanwhile goes through its restart policy).
   */
  readonly restore: InventoryItem[];
  /**
   * Live copies of tasks that were replaced while the manager had lost contact with this
   * worker, but whose replacement does not run (not started yet, failed, or never placed):
   * the task points at the returning copy again, and the replacement is stopped.
   */
  readonly reclaim: CopyDecision[];
  /**
   * Those of `stop` that are live copies of a task whose replacement runs: the replacement
   * is kept, and the task's events say that this copy is stopped, and why.
   */
  readonly duplicates: CopyDecision[];
  /**
   * Those of `stop` that are live copies of a task that moved, which the manager never moved
   * off this worker at that generation: a worker may only claim back what it was running when
   * it went DOWN, never another worker's task. Stopped (the caller logs them), and nothing of
   * the task changes.
   */
  readonly strangers: InventoryItem[];
}

/** Whether a task's current placement runs a copy worth keeping over a returning one. */
function replacementRuns(task: Task): boolean {
  if (task.state !== TaskState.RUNNING) return false;
  return !task.spec?.healthCheck?.path || task.health === HealthStatus.HEALTHY;
}

/** Why a task's current placement is (not) kept, in words. */
function describeReplacement(task: Task): string {
  if (replacementRuns(task)) {
    return task.spec?.healthCheck?.path
      ? "the replacement is RUNNING and healthy"
      : "the replacement is RUNNING";
  }
  if (task.state === TaskState.RUNNING) return "the replacement is RUNNING but not healthy yet";
  if (task.state === TaskState.PENDING) return "no replacement could be placed (PENDING)";
  return `no replacement runs (it is ${stateName(task.state)})`;
}

/**
 * Compares what a worker holds with what the manager wants of it: a pure function of the
 * worker's inventory and a read-only view of the tasks (`lookup`, and the ids of the tasks
 * placed on the worker).
 *
 * - A task placed here (SCHEDULED, RUNNING or UNKNOWN, desired RUNNING) that the worker does
 *   not hold, or holds at an older generation, is sent again (`run`).
 * - A task UNKNOWN here whose copy the worker holds at the task's generation is back
 *   (`restore`): contact with its worker was lost, never the container.
 * - A live copy (RUNNING) of a task that moved to another worker while this one was out of
 *   reach: exactly one copy survives. When `keepReturning` gives a reason (the worker's
 *   agent restarted within the restart grace: its containers ran on, only the agent was
 *   gone), the returning copy (`reclaim`). Otherwise the replacement, when it is RUNNING (and
 *   healthy, when it has a health check): this copy is stopped (`stop` and `duplicates`);
 *   else again the returning copy: it already runs, and the replacement is stopped. Only a
 *   copy of the generation the task had when it was moved off this very worker counts
 *   (`movedOff`, when given: what the task's record says, not what the worker claims); any
 *   other such copy is stopped (`stop` and `strangers`).
 * - Any other copy is stale — its task is unknown, placed elsewhere, of another generation,
 *   meant to be stopped, or has ended in the manager's eyes while its container still runs (a
 *   task that gave up after failed health checks) — and is stopped.
 */
export function reconcile(
  workerId: string,
  items: readonly InventoryItem[],
  lookup: (taskId: string) => Task | undefined,
  placedHere: Iterable<string>,
  keepReturning?: string,
  movedOff?: (taskId: string) => bigint | undefined,
): ReconcileActions {
  const actions = {
    stop: [] as InventoryItem[],
    run: [] as string[],
    current: [] as string[],
    restore: [] as InventoryItem[],
    reclaim: [] as CopyDecision[],
    duplicates: [] as CopyDecision[],
    strangers: [] as InventoryItem[],
  };
  const held = new Set<string>();
  for (const item of items) {
    held.add(item.taskId);
    const task = lookup(item.taskId);
    const live = item.state === TaskState.SCHEDULED || item.state === TaskState.RUNNING;
    const wanted = task !== undefined && task.desiredState === DesiredState.RUNNING;
    const here = task !== undefined && task.workerId === workerId;
    if (here && wanted && holdsResources(task.state) && item.generation < task.generation) {
      // A restart the worker has not seen: its RUN replaces the old container. A STOP
      // here could overtake that RUN and stop the task for good.
      actions.run.push(item.taskId);
    } else if (here && wanted && task.state === TaskState.UNKNOWN) {
      if (item.generation === task.generation) actions.restore.push(item);
      else actions.stop.push(item); // newer than the manager knows: not its copy
    } else if (
      task !== undefined &&
      !here &&
      wanted &&
      item.state === TaskState.RUNNING &&
      // Placed elsewhere at the item's very generation cannot be a move of this copy (a
      // stale one from before a reclaim); PENDING keeps the generation of the copy it lost.
      (task.workerId === "" || item.generation !== task.generation)
    ) {
      // The task moved while this worker was out of reach: keep one copy. Only if it did
      // move off this worker, at this generation: else the worker claims a task it never ran.
      const because = keepReturning ?? describeReplacement(task);
      if (movedOff !== undefined && movedOff(item.taskId) !== item.generation) {
        actions.stop.push(item);
        actions.strangers.push(item);
      } else if (keepReturning === undefined && replacementRuns(task)) {
        actions.stop.push(item);
        actions.duplicates.push({ item, because });
      } else {
        actions.reclaim.push({ item, because });
      }
    } else if (
      !task ||
      !here ||
      item.generation !== task.generation ||
      !wanted ||
      (isFinished(task.state) && live)
    ) {
      actions.stop.push(item);
    } else {
      actions.current.push(item.taskId);
    }
  }
  for (const id of placedHere) {
    if (held.has(id)) continue;
    const task = lookup(id);
    if (task && task.desiredState === DesiredState.RUNNING) actions.run.push(id);
  }
  return actions;
}
