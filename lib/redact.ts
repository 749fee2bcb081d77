import type { Task, TaskEvent, TaskSpec } from "../gen/cube/v1/task_pb.js";
import { printable } from "./printable-text.js";

/** What a secret value reads as wherever a task is shown. */
export const REDACTED = "<redacted>";

/** Whether the spec holds secret values (most do not: then nothing is copied). */
export function hasSecrets(spec: TaskSpec | undefined): spec is TaskSpec {
  if (!spec) return false;
  for (const _ in spec.secretEnv) return true;
  return false;
}

/** The spec with every secret value replaced by {@link REDACTED} (the same object when none). */
export function redactSpec(spec: TaskSpec): TaskSpec;
export function redactSpec(spec: TaskSpec | undefined): TaskSpec | undefined;
export function redactSpec(spec: TaskSpec | undefined): TaskSpec | undefined {
  if (!hasSecrets(spec)) return spec;
  // Object.fromEntries, not assignments: those would drop a key named `__proto__`.
  const secretEnv = Object.fromEntries(Object.keys(spec.secretEnv).map((key) => [key, REDACTED]));
  return { ...spec, secretEnv };
}

/**
 * Secret values shorter than this are not looked for in free text: replacing every "1" of
 * "exit code 1" would hide more than it protects.
 */
export const MIN_SCRUBBED_LENGTH = 4;

/**
 * `text` with every secret value of `spec` (at least {@link MIN_SCRUBBED_LENGTH} long) that
 * it quotes, as given, JSON-escaped or escaped as the manager keeps a worker's text
 * (lib/printable-text.ts), replaced by {@link REDACTED}. For words that come from elsewhere
 * (the engine's error messages, which may quote the environment they refused): the spec's
 * checks keep the known ways out, this is the net under them.
 */
export function scrubSecrets(text: string, spec: TaskSpec | undefined): string {
  if (text === "" || !hasSecrets(spec)) return text;
  let out = text;
  for (const value of Object.values(spec.secretEnv)) {
    if (value.length < MIN_SCRUBBED_LENGTH) continue;
    const json = JSON.stringify(value).slice(1, -1);
    for (const form of new Set([value, json, printable(value), printable(json)])) {
      out = out.replaceAll(form, REDACTED);
    }
  }
  return out;
}

/**
 * The task as every read API shows it: secret values redacted, in the spec and wherever its
 * reason quotes them. Snapshots are shared and immutable, so a task with secrets is copied;
 * one without is returned as is.
 */
export function redactTask(task: Task): Task;
export function redactTask(task: Task | undefined): Task | undefined;
export function redactTask(task: Task | undefined): Task | undefined {
  if (!task || !hasSecrets(task.spec)) return task;
  return { ...task, spec: redactSpec(task.spec), reason: scrubSecrets(task.reason, task.spec) };
}

/** The event with its task and its message redacted (see {@link redactTask}). */
export function redactEvent(event: TaskEvent): TaskEvent {
  if (!event.task || !hasSecrets(event.task.spec)) return event;
  return {
    ...event,
    task: redactTask(event.task),
    message: scrubSecrets(event.message, event.task.spec),
  };
}
