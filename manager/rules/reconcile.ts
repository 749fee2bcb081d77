import { DesiredState, type Task, TaskState } from "../../gen/cube/v1/task_pb.js";
import type { InventoryItem } from "../../gen/cube/v1/worker_service_pb.js";
import { holdsResources, isFinished } from "../../lib/task-state.js";

/** What the manager must send a worker after reading its inventory. */
export interface ReconcileActions {
  /** Items the worker must stop and remove: unknown tasks, stale copies, stopped tasks. */
  readonly stop: InventoryItem[];
  /** Ids of tasks placed on the worker that it does not hold (at this generation): send RUN again. */
  readonly run: string[];
  /** Ids of tasks the worker holds at their current generation (their RUN arrived). */
  readonly current: string[];
}

/**
 * Compares what a worker holds with what the manager wants of it. An item is stale — stop
 * it — when its task is unknown, placed on another worker, of another generation, meant to
 * be stopped, or has ended in the manager's eyes while its container still runs (a task that
 * gave up after failed health checks). A task placed on the worker (SCHEDULED or RUNNING,
 * desired RUNNING) that the worker does not hold, or holds at an older generation, is sent
 * again. Pure.
 */
export function reconcile(
  workerId: string,
  items: readonly InventoryItem[],
  lookup: (taskId: string) => Task | undefined,
  placedHere: Iterable<string>,
): ReconcileActions {
  const stop: InventoryItem[] = [];
  const current: string[] = [];
  const run: string[] = [];
  const held = new Set<string>();
  for (const item of items) {
    held.add(item.taskId);
    const task = lookup(item.taskId);
    const live = item.state === TaskState.SCHEDULED || item.state === TaskState.RUNNING;
    const placedHereNow =
      task !== undefined &&
      task.workerId === workerId &&
      task.desiredState === DesiredState.RUNNING &&
      holdsResources(task.state);
    if (placedHereNow && item.generation < task.generation) {
      // A restart the worker has not seen: its RUN replaces the old container. A STOP
      // here could overtake that RUN and stop the task for good.
      run.push(item.taskId);
    } else if (
      !task ||
      task.workerId !== workerId ||
      item.generation !== task.generation ||
      task.desiredState === DesiredState.STOPPED ||
      (isFinished(task.state) && live)
    ) {
      stop.push(item);
    } else {
      current.push(item.taskId);
    }
  }
  for (const id of placedHere) {
    if (held.has(id)) continue;
    const task = lookup(id);
    if (task && task.desiredState === DesiredState.RUNNING) run.push(id);
  }
  return { stop, run, current };
}
