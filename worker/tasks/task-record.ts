import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  DesiredState,
  type Task,
  TaskSchema,
  type TaskSpec,
  type TaskState,
} from "../../gen/cube/v1/task_pb.js";
import { type InventoryItem, InventoryItemSchema } from "../../gen/cube/v1/worker_service_pb.js";
import type { NewUpdate } from "../stream/outbox.js";
import { DriverError } from "./driver.js";

/**
 * A copy of `task` with `changes` applied. Shallow: records are never changed in place, so
 * the copy shares the spec, ports and timestamps (and the spec's cached encoding) safely.
 */
export function withChanges(task: Task, changes: Partial<Omit<Task, "$typeName">>): Task {
  return { ...task, ...changes };
}

/** A fresh record of a task the worker was told to run. */
export function newRecord(task: Task, workerId: string, state: TaskState): Task {
  return create(TaskSchema, {
    id: task.id,
    spec: task.spec,
    desiredState: DesiredState.RUNNING,
    state,
    workerId,
    generation: task.generation,
    restartCount: task.restartCount,
    createdAt: task.createdAt,
    scheduledAt: task.scheduledAt ?? timestampNow(),
  });
}

/** The update that reports `task` as it is now. */
export function updateOf(task: Task): NewUpdate {
  return {
    taskId: task.id,
    generation: task.generation,
    state: task.state,
    containerId: task.containerId,
    ports: task.ports,
    exitCode: task.exitCode,
    reason: task.reason,
  };
}

/** The inventory line of `task`. */
export function inventoryItemOf(task: Task): InventoryItem {
  return create(InventoryItemSchema, {
    taskId: task.id,
    generation: task.generation,
    state: task.state,
    containerId: task.containerId,
    ports: task.ports,
  });
}

/**
 * Why `spec` cannot run, in words for people, or undefined when it can. Only what the
 * worker itself needs: the manager validates the rest before it ever assigns a task.
 */
export function specProblem(spec: TaskSpec | undefined): string | undefined {
  if (!spec) return "invalid spec: the assignment carries no spec";
  if (!spec.image.trim()) return "invalid spec: image is required";
  for (const p of spec.ports) {
    if (p.containerPort < 1 || p.containerPort > 65535) {
      return `invalid spec: container port ${p.containerPort} is not in 1-65535`;
    }
    if (p.hostPort > 65535) return `invalid spec: host port ${p.hostPort} is not in 0-65535`;
  }
  // As the manager checks (an older one did not): named, never quoted, for secrets' sake.
  for (const [field, values] of [
    ["env", spec.env],
    ["secret_env", spec.secretEnv],
  ] as const) {
    for (const [key, value] of Object.entries(values)) {
      if (value.includes("\0")) return `invalid spec: ${field} ${key} holds a NUL byte`;
    }
  }
  if ([...spec.command, ...spec.args].some((a) => a.includes("\0"))) {
    return "invalid spec: the command or its arguments hold a NUL byte";
  }
  return undefined;
}

/** The reason a failed start is reported with: the driver's words when it has them. */
export function failureReason(error: unknown): string {
  if (error instanceof DriverError) return error.message;
  return `runtime error: ${error instanceof Error ? error.message : String(error)}`;
}
