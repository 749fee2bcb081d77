import type { TaskFile } from "./parse-task-file.js";

/**
 * `count` requests for one task, for `cube run --count`. A chosen id becomes ID-0, ID-1, …
 * (so running the same command again is idempotent) and a name NAME-0, NAME-1, …; without
 * an id the manager picks one for each.
 */
export function taskCopies(request: TaskFile, count: number): TaskFile[] {
  const { id, spec } = request;
  return Array.from({ length: count }, (_, i) => ({
    ...(id ? { id: `${id}-${i}` } : {}),
    spec: spec.name ? { ...spec, name: `${spec.name}-${i}` } : spec,
  }));
}
