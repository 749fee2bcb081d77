import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { DesiredState, HealthStatus, type Task, TaskState } from "../../gen/cube/v1/task_pb.js";
import { canTransition, stateName } from "../../lib/task-state.js";
import { timestampLiteral } from "../../lib/timestamp.js";

/*
 * Every change of a task's state, built in one place: the rules ask for a move by name, and
 * ControlPlane.change checks it against the transition table (lib/task-state.ts) before it
 * records anything. The manager's own decisions (scheduled, pending, stopped, failed) and what
 * a worker observes of its container (running, ended) are both here, so what a move resets
 * is written once. A new state, or a new field a move must reset, is added here.
 */

/**
 * How long a task must run ready (RUNNING, and HEALTHY when it has a health check) for its
 * restart count, and with it the restart back-off, to start afresh: 10 minutes, Kubernetes'
 * reset of its crash back-off.
 */
export const RESTART_RESET_MS = 10 * 60_000;

/**
 * The restarts that count against `task`'s restart policy at `nowMs`: its `restart_count`,
 * or 0 when it is ready and has been since {@link RESTART_RESET_MS} ago. ControlPlane.change
 * stores that 0 when such a task stops being ready, so the count read later (after a manager
 * restart, by `cube run --wait`) is the reset one.
 */
export function restartsSoFar(task: Task, nowMs: number): number {
  const since = task.readyAt ? timestampMs(task.readyAt) : undefined;
  return since !== undefined && nowMs - since >= RESTART_RESET_MS ? 0 : task.restartCount;
}

/** A patch of a task: what changes, on top of the snapshot before. */
export type TaskPatch = Partial<Omit<Task, "$typeName" | "id" | "spec" | "revision">>;

/** A time as the builders take it: milliseconds of the manager's clock, or a worker's stamp. */
export type At = number | Timestamp;

function stamp(at: At): Timestamp {
  return typeof at === "number" ? timestampLiteral(at) : at;
}

/** SCHEDULED on `workerId` as the next attempt: new generation, nothing observed yet. */
export function scheduled(
  task: Task,
  workerId: string,
  restartCount: number,
  nowMs: number,
): TaskPatch {
  return {
    state: TaskState.SCHEDULED,
    workerId,
    generation: task.generation + 1n,
    restartCount,
    scheduledAt: timestampLiteral(nowMs),
    containerId: "",
    ports: [],
    exitCode: undefined,
    health: HealthStatus.UNSPECIFIED,
    reason: "",
  };
}

/** Back to PENDING (no worker fits now), with the scheduler's reason. */
export function pending(reason: string, restartCount: number): TaskPatch {
  return {
    state: TaskState.PENDING,
    workerId: "",
    containerId: "",
    ports: [],
    health: HealthStatus.UNSPECIFIED,
    restartCount,
    reason,
  };
}

/** Desired STOPPED: a user asked for the task to stop (its state moves once that took effect). */
export function stopRequested(): TaskPatch {
  return { desiredState: DesiredState.STOPPED };
}

/**
 * COMPLETED "stopped": a stop the user asked for has taken effect — decided by the manager
 * (`at` its clock), or seen by the worker (`at` the worker's stamp, with the exit code of the
 * container when it gave one; an exit code left out keeps the one the task has).
 */
export function stopped(at: At, exitCode?: number): TaskPatch {
  const patch: TaskPatch = {
    state: TaskState.COMPLETED,
    reason: "stopped",
    finishedAt: stamp(at),
  };
  if (exitCode !== undefined) patch.exitCode = exitCode;
  return patch;
}

/** FAILED with `reason`, decided by the manager (a health check it gave up on). */
export function failed(reason: string, nowMs: number): TaskPatch {
  return { state: TaskState.FAILED, reason, finishedAt: timestampLiteral(nowMs) };
}

/** RUNNING, as the worker saw its container start at `startedAt`. */
export function running(startedAt: At, reason = ""): TaskPatch {
  return { state: TaskState.RUNNING, reason, startedAt: stamp(startedAt) };
}

/**
 * COMPLETED or FAILED, as the worker saw its container end (or fail to start): its reason,
 * its exit code when it had one (left out, the task keeps the one it has).
 */
export function ended(
  state: TaskState.COMPLETED | TaskState.FAILED,
  reason: string,
  finishedAt: At,
  exitCode?: number,
): TaskPatch {
  const patch: TaskPatch = { state, reason, finishedAt: stamp(finishedAt) };
  if (exitCode !== undefined) patch.exitCode = exitCode;
  return patch;
}

/**
 * The moves a worker may report: what it can see of its container (it started, it ended).
 * Every other move in the transition table — a restart, a move to another worker, back to
 * PENDING — is the manager's to decide, never a worker's to report.
 */
const OBSERVABLE: Readonly<Partial<Record<TaskState, readonly TaskState[]>>> = {
  [TaskState.SCHEDULED]: [TaskState.RUNNING, TaskState.COMPLETED, TaskState.FAILED],
  [TaskState.RUNNING]: [TaskState.COMPLETED, TaskState.FAILED],
  // Replayed by a worker that comes back: what happened while contact was lost.
  [TaskState.UNKNOWN]: [TaskState.RUNNING, TaskState.COMPLETED, TaskState.FAILED],
};

/**
 * Why a worker may not report `from → to` (for the log line of the refusal), or undefined
 * when it may. Checked before anything changes: a refused report leaves the task as it is.
 */
export function refusedReport(from: TaskState, to: TaskState): string | undefined {
  if (TaskState[to] === undefined) return `${stateName(to)} is not a task state`;
  if (!canTransition(from, to)) {
    return `${stateName(from)} → ${stateName(to)} is not in the transition table`;
  }
  if (!OBSERVABLE[from]?.includes(to)) {
    return `${stateName(from)} → ${stateName(to)} is the manager's to decide, not a worker's to report`;
  }
  return undefined;
}

/*
 * Losing contact with a worker, and finding it again (manager/rules/worker-liveness.ts and
 * the inventory reconcile). Disconnection is not death: the task keeps its placement.
 */

/**
 * UNKNOWN: the manager lost contact with the task's worker at `nowMs` (`why` says how). The
 * task keeps its worker, generation and container: they may well still run.
 */
export function lostContact(why: string, nowMs: number): TaskPatch {
  return { state: TaskState.UNKNOWN, reason: why, lostContactAt: timestampLiteral(nowMs) };
}

/**
 * Back from UNKNOWN to `state`, as the returning worker holds the task at its generation
 * (SCHEDULED: the worker is starting it, or is sent its RUN again; RUNNING: its container
 * runs), with the container id and ports it reports when it gives them.
 */
export function contactRestored(
  state: TaskState.SCHEDULED | TaskState.RUNNING,
  seen: { containerId?: string; ports?: Task["ports"] } = {},
): TaskPatch {
  const patch: TaskPatch = { state, reason: "" };
  if (seen.containerId) patch.containerId = seen.containerId;
  if (seen.ports && seen.ports.length > 0) patch.ports = seen.ports;
  return patch;
}

/**
 * SCHEDULED on `workerId` at `generation`, the copy it reports (`seen`): a worker the
 * manager had lost contact with came back still running a copy that was replaced, no
 * replacement runs, so the task points at the returning copy again (its replacement is
 * stopped). Then {@link contactRestored} RUNNING, as that worker holds it. Health starts
 * over: the worker reports it again.
 */
export function reclaimed(
  workerId: string,
  generation: bigint,
  seen: { containerId: string; ports: Task["ports"] },
): TaskPatch {
  return {
    state: TaskState.SCHEDULED,
    workerId,
    generation,
    containerId: seen.containerId,
    ports: seen.ports,
    exitCode: undefined,
    health: HealthStatus.UNSPECIFIED,
    reason: "",
  };
}
