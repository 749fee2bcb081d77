import type { Task, TaskEvent, TaskSpec } from "../gen/cube/v1/task_pb.js";

/** What a secret value reads as wherever a task is shown. */
export const REDACTED = "<redacted>";

/** Whether the spec holds secret values (most do not: then nothing is copied). */
function hasSecrets(spec: TaskSpec | undefined): spec is TaskSpec {
  if (!spec) return false;
  for (const _ in spec.secretEnv) return true;
  return false;
}

/** The spec with every secret value replaced by {@link REDACTED} (the same object when none). */
export function redactSpec(spec: TaskSpec): TaskSpec;
export function redactSpec(spec: TaskSpec | undefined): TaskSpec | undefined;
export function redactSpec(spec: TaskSpec | undefined): TaskSpec | undefined {
  if (!hasSecrets(spec)) return spec;
  const secretEnv: Record<string, string> = {};
  for (const key of Object.keys(spec.secretEnv)) secretEnv[key] = REDACTED;
  return { ...spec, secretEnv };
}

/**
 * The task as every read API shows it: secret values redacted. Snapshots are shared and
 * immutable, so a task with secrets is copied; one without is returned as is.
 */
export function redactTask(task: Task): Task;
export function redactTask(task: Task | undefined): Task | undefined;
export function redactTask(task: Task | undefined): Task | undefined {
  if (!task || !hasSecrets(task.spec)) return task;
  return { ...task, spec: redactSpec(task.spec) };
}

/** The event with its task redacted (see {@link redactTask}). */
export function redactEvent(event: TaskEvent): TaskEvent {
  if (!event.task || !hasSecrets(event.task.spec)) return event;
  return { ...event, task: redactTask(event.task) };
}
