import { DesiredState, HealthStatus, TaskEventType, TaskState } from "../../gen/cube/v1/task_pb.js";
import { WorkerStatus } from "../../gen/cube/v1/worker_pb.js";
import { AssignmentAction } from "../../gen/cube/v1/worker_service_pb.js";
import { holdsResources } from "../../lib/task-state.js";
import type { ControlPlane } from "../core/control-plane.js";
import { failed, type TaskPatch } from "../core/lifecycle.js";
import type { TaskEntry } from "../core/task-table.js";
import type { WorkerEntry } from "../core/worker-table.js";
import { assignAttempt, place, taskRequest } from "./placing.js";
import {
  decideRestart,
  type EndKind,
  formatAttempt,
  formatMs,
  maxRestarts,
} from "./restart-policy.js";

/**
 * A task's container ended (`patch`, built by core/lifecycle.ts's `ended`, holds the terminal
 * state and reason): records it, then applies the restart policy — a PROGRESS event
 * "restarting in 200ms (2/3)" and a timer, or " (gave up after 3 restarts)" added to the
 * reason.
 */
export function taskEnded(cp: ControlPlane, entry: TaskEntry, patch: TaskPatch, end: EndKind) {
  const reason = patch.reason ?? "";
  if (entry.restartTimer || entry.task.desiredState !== DesiredState.RUNNING) {
    cp.change(entry, patch, TaskEventType.STATE_CHANGED, reason);
    return;
  }
  const decision = decideRestart(entry.task, end, cp.clock.now());
  if (decision.kind === "give-up") {
    const gaveUp = `${reason} (gave up after ${decision.max} restarts)`;
    cp.change(entry, { ...patch, reason: gaveUp }, TaskEventType.STATE_CHANGED, gaveUp);
    return;
  }
  cp.change(entry, patch, TaskEventType.STATE_CHANGED, reason);
  if (decision.kind === "restart") {
    scheduleRestart(cp, entry, decision.delayMs, decision.attempt, decision.max);
  }
}

/**
 * A RUNNING task's health check failed `failure_threshold` times: restart it per its policy,
 * or — restarts exhausted — mark it FAILED and stop its container.
 */
export function taskUnhealthy(
  cp: ControlPlane,
  entry: TaskEntry,
  worker: WorkerEntry,
  why: string,
) {
  const task = entry.task;
  if (task.state !== TaskState.RUNNING || task.desiredState !== DesiredState.RUNNING) return;
  if (entry.restartTimer) return;
  const decision = decideRestart(task, "unhealthy", cp.clock.now());
  if (decision.kind === "restart") {
    scheduleRestart(cp, entry, decision.delayMs, decision.attempt, decision.max);
  } else if (decision.kind === "give-up") {
    const reason = `health check failed: ${why} (gave up after ${decision.max} restarts)`;
    const after = cp.change(
      entry,
      failed(reason, cp.clock.now()),
      TaskEventType.STATE_CHANGED,
      reason,
    );
    cp.assign(worker, AssignmentAction.STOP, after);
  }
}

function scheduleRestart(
  cp: ControlPlane,
  entry: TaskEntry,
  delayMs: number,
  attempt: number,
  max: number,
): void {
  cp.change(
    entry,
    {},
    TaskEventType.PROGRESS,
    `restarting in ${formatMs(delayMs)} (${formatAttempt(attempt, max)})`,
  );
  cp.restarting.add(entry);
  entry.restartTimer = cp.timer(delayMs, () => {
    entry.restartTimer = undefined;
    cp.restarting.delete(entry);
    restartNow(cp, entry);
  });
}

/** Cancels a restart waiting out its back-off. */
export function cancelRestart(cp: ControlPlane, entry: TaskEntry): void {
  if (!entry.restartTimer) return;
  cp.clearTimer(entry.restartTimer);
  entry.restartTimer = undefined;
  cp.restarting.delete(entry);
}

/**
 * Starts a task again: RUN with the next generation on the same worker (the worker replaces
 * the old container), or, when that worker takes no new task now (not READY, still
 * reporting what it holds, without its engine, cordoned or draining: its scheduler view is
 * not ready) or lacks room, wherever the scheduler finds room (PENDING when nowhere), as a new
 * placement would. A copy still running there (a restart of an unhealthy task) is stopped.
 */
function restartNow(cp: ControlPlane, entry: TaskEntry): void {
  const task = entry.task;
  if (task.desiredState !== DesiredState.RUNNING) return;
  const from = task.state;
  if (from !== TaskState.FAILED && from !== TaskState.COMPLETED && from !== TaskState.RUNNING) {
    return; // moved meanwhile (its worker went DOWN)
  }
  const max = maxRestarts(task);
  const worker = cp.workers.get(task.workerId);
  // The scheduler's own test: a drained worker must not get a task back after a back-off.
  const ready = worker?.view.ready === true;
  if (worker && ready && (holdsResources(from) || worker.fits(entry.request, entry.hostPorts))) {
    restartOn(cp, entry, worker, max);
    return;
  }
  const avoid = worker && !ready ? new Set([worker.id]) : undefined;
  if (worker && holdsResources(from)) {
    // A copy still running (unhealthy) is stopped only when another worker takes the task:
    // a cordoned worker that is the only one left keeps restarting it in place, as a drain
    // waits for room before it stops anything.
    const plan = cp.placer.plan(taskRequest(entry, avoid), cp.workers.views(), cp.clock.now());
    if (plan.kind !== "place" && worker.status === WorkerStatus.READY) {
      restartOn(cp, entry, worker, max);
      return;
    }
    cp.assign(worker, AssignmentAction.STOP, task);
  }
  place(cp, entry, {
    restart: true,
    avoid,
    placedMessage: (w) => `restart ${formatAttempt(task.restartCount + 1, max)} on ${w.label}`,
  });
}

/** The next attempt of the task on `worker`, its last one (the worker replaces the old container). */
function restartOn(cp: ControlPlane, entry: TaskEntry, worker: WorkerEntry, max: number): void {
  const attempt = entry.task.restartCount + 1;
  assignAttempt(
    cp,
    entry,
    worker,
    attempt,
    `restart ${formatAttempt(attempt, max)} on ${worker.label}`,
  );
}

/** After a load: restarts that were waiting out a back-off when the manager stopped are scheduled again. */
export function resumeRestarts(cp: ControlPlane): void {
  for (const entry of cp.tasks.all()) {
    const task = entry.task;
    if (task.desiredState !== DesiredState.RUNNING) continue;
    const end: EndKind | undefined =
      task.state === TaskState.FAILED
        ? "failed"
        : task.state === TaskState.COMPLETED
          ? "completed"
          : task.state === TaskState.RUNNING && task.health === HealthStatus.UNHEALTHY
            ? "unhealthy"
            : undefined;
    if (!end) continue;
    const decision = decideRestart(task, end, cp.clock.now());
    if (decision.kind === "restart") {
      scheduleRestart(cp, entry, decision.delayMs, decision.attempt, decision.max);
    }
  }
}
