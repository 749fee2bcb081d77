import { TaskState } from "../../gen/cube/v1/task_pb.js";

/** Every task state cube sets (UNSPECIFIED never is), in the enum's order. */
export const TASK_STATES: readonly TaskState[] = Object.values(TaskState).filter(
  (v): v is TaskState => typeof v === "number" && v !== TaskState.UNSPECIFIED,
);

/**
 * How many tasks are in each state, kept in step with every change (O(1) each), so that
 * reading them — a Prometheus scrape every few seconds on a manager of 100,000 tasks — never
 * walks the task table.
 */
export class TaskCounts {
  readonly #counts = new Float64Array(Math.max(...TASK_STATES) + 1);

  /** A task moved from `before` (undefined: it is new, or just loaded) to `after` (undefined: removed). */
  move(before: TaskState | undefined, after: TaskState | undefined): void {
    if (before === after) return;
    if (before !== undefined) this.#counts[before]--;
    if (after !== undefined) this.#counts[after]++;
  }

  /** Tasks in `state` now. */
  get(state: TaskState): number {
    return this.#counts[state] ?? 0;
  }
}
