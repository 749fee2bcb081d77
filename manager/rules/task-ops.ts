import { randomUUID } from "node:crypto";
import { equals } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  DesiredState,
  type Task,
  type TaskEvent,
  TaskEventType,
  type TaskSpec,
  TaskSpecSchema,
  TaskState,
} from "../../gen/cube/v1/task_pb.js";
import type { RunTaskRequest } from "../../gen/cube/v1/task_service_pb.js";
import { AssignmentAction } from "../../gen/cube/v1/worker_service_pb.js";
import { quote } from "../../lib/quote.js";
import { hasSecrets } from "../../lib/redact.js";
import type { ControlPlane } from "../core/control-plane.js";
import { stopped, stopRequested } from "../core/lifecycle.js";
import type { TaskEntry } from "../core/task-table.js";
import { placeNew } from "./placing.js";
import { cancelRestart } from "./restarts.js";
import { gcHint } from "./task-gc.js";
import { validateRunTask } from "./validate-spec.js";

/**
 * The task, or NOT_FOUND naming the id (INVALID_ARGUMENT without one, naming the request's
 * `field`).
 */
export function findTask(cp: ControlPlane, id: string, field = "id"): TaskEntry {
  if (id === "") throw new ConnectError(`${field}: required`, Code.InvalidArgument);
  const entry = cp.tasks.get(id);
  if (!entry) {
    throw new ConnectError(
      `task ${quote(id)} not found${gcHint(cp.options.taskGcAfterMs)}`,
      Code.NotFound,
    );
  }
  return entry;
}

/**
 * Validates, stores and places a task; resolves once it is durable, with the task as stored
 * (PENDING with a reason, or SCHEDULED). A known id with an equal spec returns the existing
 * task (an idempotent retry); with another spec, ALREADY_EXISTS; see {@link knownTask} for
 * specs with secret values. `caller`: the id of the calling token ("" without tokens).
 */
export async function runTask(
  cp: ControlPlane,
  request: RunTaskRequest,
  caller: string,
): Promise<Task> {
  const spec = validateRunTask(request);
  const existing = knownTask(cp, request.id, spec, caller);
  if (existing) {
    await cp.committed();
    return existing.task;
  }
  const stored = acceptTask(cp, request.id, spec, caller);
  await cp.committed();
  return stored;
}

/**
 * The task already stored under a client-chosen id when its spec equals `spec` (a retry);
 * undefined when the id is empty or new. Throws ALREADY_EXISTS naming the id when the stored
 * spec differs. Changes nothing.
 *
 * When either spec carries secret_env values, only the token that created the task
 * (`caller`, the calling token's id, against `TaskEntry.createdBy`) gets that comparison:
 * anyone else gets ALREADY_EXISTS at once, with one message whatever the values, so that
 * RunTask cannot confirm a guess of another's secret (a right guess would be "a retry", a
 * wrong one "another spec"). A task with no recorded creator (a job's replica, or one stored
 * before creators were) is another's to everyone.
 */
export function knownTask(
  cp: ControlPlane,
  id: string,
  spec: TaskSpec,
  caller: string,
): TaskEntry | undefined {
  if (id === "") return undefined;
  const existing = cp.tasks.get(id);
  if (!existing) return undefined;
  const stored = existing.task.spec;
  if (existing.createdBy !== caller && (hasSecrets(spec) || hasSecrets(stored))) {
    throw new ConnectError(
      `task "${id}" already exists; a retry carrying secret values is recognised only from the token that created it`,
      Code.AlreadyExists,
    );
  }
  if (!stored || !equals(TaskSpecSchema, stored, spec)) {
    throw new ConnectError(`task "${id}" already exists with another spec`, Code.AlreadyExists);
  }
  return existing;
}

/**
 * Creates a validated, new task (the manager picks the id when `id` is empty) and places it
 * or queues it; returns the snapshot as stored, durable with the next group commit.
 * `caller`: the id of the token that asked ("" without tokens), kept as the task's creator.
 */
export function acceptTask(cp: ControlPlane, id: string, spec: TaskSpec, caller: string): Task {
  const entry = cp.createTask(id || randomUUID(), spec, caller);
  placeNew(cp, entry);
  return entry.task;
}

/**
 * Asks for a task to stop. A PENDING task is COMPLETED "stopped" at once; a placed one gets
 * desired STOPPED and a STOP to its worker, and is COMPLETED "stopped" when the worker says
 * so. Stopping a task already stopping or ended is not an error (it answers the task as is).
 */
export async function stopTask(cp: ControlPlane, id: string): Promise<Task> {
  const entry = findTask(cp, id);
  let task = entry.task;
  if (task.desiredState === DesiredState.STOPPED) {
    await cp.committed();
    return task;
  }
  task = requestStop(cp, entry, "stop requested");
  await cp.committed();
  return task;
}

/**
 * Records a stop of a task whose desired state is RUNNING (`message` says who asked and why):
 * desired STOPPED, then COMPLETED "stopped" at once when it was PENDING, else a STOP to its
 * worker. Returns the task after the change; durable with the next group commit.
 */
export function requestStop(cp: ControlPlane, entry: TaskEntry, message: string): Task {
  cancelRestart(cp, entry);
  const from = entry.task.state;
  let task = cp.change(entry, stopRequested(), TaskEventType.DESIRED_CHANGED, message);
  if (from === TaskState.PENDING) {
    task = cp.change(
      entry,
      stopped(cp.clock.now()),
      TaskEventType.STATE_CHANGED,
      "stopped before it was placed",
    );
  } else {
    // Placed or ended: the worker stops and removes its container (an ended task's container
    // is kept for its logs until then).
    const worker = cp.workers.get(task.workerId);
    if (worker) cp.assign(worker, AssignmentAction.STOP, task);
  }
  return task;
}

/** One page of a task's events, oldest first, with their tasks' specs filled in. */
export async function taskEvents(
  cp: ControlPlane,
  taskId: string,
  after: bigint,
  limit: number,
): Promise<{ events: TaskEvent[]; more: boolean }> {
  const entry = findTask(cp, taskId, "task_id");
  await cp.committed();
  const events = await cp.store.taskEvents(taskId, after, limit + 1);
  const more = events.length > limit;
  if (more) events.length = limit;
  return { events: events.map((e) => withSpec(e, entry.task)), more };
}

/** Stored events carry their task without its spec (it never changes): put it back. */
export function withSpec(event: TaskEvent, current: Task | undefined): TaskEvent {
  if (!event.task || event.task.spec || !current?.spec) return event;
  return { ...event, task: { ...event.task, spec: current.spec } };
}
