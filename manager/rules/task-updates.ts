import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  DesiredState,
  HealthStatus,
  type Task,
  TaskEventType,
  TaskState,
} from "../../gen/cube/v1/task_pb.js";
import type { HealthReport, Progress, TaskUpdate } from "../../gen/cube/v1/worker_service_pb.js";
import { canTransition, isFinished, stateName } from "../../lib/task-state.js";
import type { ControlPlane } from "../core/control-plane.js";
import type { TaskEntry } from "../core/task-table.js";
import type { WorkerEntry } from "../core/worker-table.js";
import { taskEnded, taskUnhealthy } from "./restarts.js";

/** States a worker may report. */
const REPORTABLE = new Set([
  TaskState.SCHEDULED,
  TaskState.RUNNING,
  TaskState.COMPLETED,
  TaskState.FAILED,
]);

/** Progress events of one task are kept at most this often (pull progress comes fast). */
const PROGRESS_EVERY_MS = 250;

/** The task an update is about, if the update is about its current placement; else undefined. */
function current(
  cp: ControlPlane,
  worker: WorkerEntry,
  taskId: string,
  generation: bigint,
): TaskEntry | undefined {
  const entry = cp.tasks.get(taskId);
  if (!entry || entry.task.workerId !== worker.id || entry.task.generation !== generation) {
    cp.logger.debug(
      { task: taskId, worker: worker.id, generation: Number(generation) },
      "ignored a message about a stale or unknown task",
    );
    return undefined;
  }
  return entry;
}

/**
 * Applies a worker's TaskUpdate through the state table. Updates of another generation or
 * worker are stale and ignored (the inventory reconcile deals with their containers). A task
 * meant to stop that ends is COMPLETED "stopped"; a task that ends otherwise goes through its
 * restart policy.
 */
export function applyUpdate(cp: ControlPlane, worker: WorkerEntry, update: TaskUpdate): void {
  const entry = current(cp, worker, update.taskId, update.generation);
  if (!entry) return;
  const task = entry.task;
  const patch: Partial<Task> = {};
  if (update.containerId && update.containerId !== task.containerId) {
    patch.containerId = update.containerId;
  }
  if (update.ports.length > 0) patch.ports = update.ports;
  let to = update.state;
  if (to === task.state) {
    if (Object.keys(patch).length > 0) cp.touch(entry, patch);
    return;
  }
  let reason = update.reason;
  const stopping = task.desiredState === DesiredState.STOPPED;
  if (stopping && isFinished(to)) {
    to = TaskState.COMPLETED;
    reason = "stopped";
  }
  if (isFinished(task.state) && isFinished(to)) return; // ended already: old news
  if (!REPORTABLE.has(to) || !canTransition(task.state, to)) {
    cp.logger.warn(
      { task: task.id, worker: worker.id, from: stateName(task.state), to: stateName(to) },
      "ignored an update with an illegal state move",
    );
    return;
  }
  const now = update.time ? update.time : timestampFromMs(cp.clock.now());
  patch.state = to;
  patch.reason = reason;
  if (update.exitCode !== undefined) patch.exitCode = update.exitCode;
  if (to === TaskState.RUNNING) patch.startedAt = now;
  if (isFinished(to)) {
    patch.finishedAt = now;
    if (!stopping) {
      taskEnded(cp, entry, patch, to === TaskState.FAILED ? "failed" : "completed");
      return;
    }
  }
  cp.change(entry, patch, TaskEventType.STATE_CHANGED, reason);
}

/** Records a health change; an UNHEALTHY task goes through its restart policy. */
export function applyHealth(cp: ControlPlane, worker: WorkerEntry, report: HealthReport): void {
  const entry = current(cp, worker, report.taskId, report.generation);
  if (!entry || entry.task.health === report.status) return;
  if (report.status !== HealthStatus.HEALTHY && report.status !== HealthStatus.UNHEALTHY) return;
  const message = report.message || HealthStatus[report.status];
  cp.change(entry, { health: report.status }, TaskEventType.HEALTH_CHANGED, message);
  if (report.status === HealthStatus.UNHEALTHY) taskUnhealthy(cp, entry, worker, message);
}

/** Records pull or start progress as a PROGRESS event, at most one per task per 250 ms. */
export function applyProgress(cp: ControlPlane, worker: WorkerEntry, progress: Progress): void {
  const entry = current(cp, worker, progress.taskId, progress.generation);
  if (!entry || isFinished(entry.task.state)) return;
  const now = cp.clock.now();
  const done = progress.totalBytes > 0n && progress.currentBytes >= progress.totalBytes;
  if (!done && entry.lastProgressMs && now - entry.lastProgressMs < PROGRESS_EVERY_MS) return;
  entry.lastProgressMs = now;
  const pct =
    progress.totalBytes > 0n
      ? ` ${Number((progress.currentBytes * 100n) / progress.totalBytes)}%`
      : "";
  cp.change(entry, {}, TaskEventType.PROGRESS, `${progress.message}${pct}`);
}
