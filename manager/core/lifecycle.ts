import { HealthStatus, type Task, TaskState } from "../../gen/cube/v1/task_pb.js";
import { timestampLiteral } from "../../lib/timestamp.js";

/*
 * Every change of a task's observed state, built in one place: the rules ask for a move by
 * name, and ControlPlane.change checks it against the transition table (lib/task-state.ts)
 * before it records anything. A new state, or a new field a move must reset, is added here.
 */

/** A patch of a task: what changes, on top of the snapshot before. */
export type TaskPatch = Partial<Omit<Task, "$typeName" | "id" | "spec" | "revision">>;

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

/** COMPLETED "stopped": a stop the user asked for has taken effect. */
export function stopped(nowMs: number): TaskPatch {
  return { state: TaskState.COMPLETED, reason: "stopped", finishedAt: timestampLiteral(nowMs) };
}

/** FAILED with `reason`, decided by the manager (a health check it gave up on). */
export function failed(reason: string, nowMs: number): TaskPatch {
  return { state: TaskState.FAILED, reason, finishedAt: timestampLiteral(nowMs) };
}
