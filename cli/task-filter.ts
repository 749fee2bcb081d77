import type { Task, TaskState } from "../gen/cube/v1/task_pb.js";

/** The filters of `cube ps`, as ListTasks takes them. */
export interface TaskFilter {
  states: TaskState[];
  workerId: string;
  name: string;
  labels: Record<string, string>;
}

/**
 * Whether a task passes the filter, with ListTasks' meaning (all filters combine with
 * AND; an empty one lets everything through). Watches apply it to each event's task.
 */
export function matchesFilter(task: Task, filter: TaskFilter): boolean {
  if (filter.states.length > 0 && !filter.states.includes(task.state)) return false;
  if (filter.workerId !== "" && task.workerId !== filter.workerId) return false;
  if (filter.name !== "" && task.spec?.name !== filter.name) return false;
  for (const [k, v] of Object.entries(filter.labels)) {
    if (task.spec?.labels[k] !== v) return false;
  }
  return true;
}
