import {
  createScheduler,
  type NodeView,
  type Plan,
  SCHEDULER_NAMES,
  type Scheduler,
  type SchedulerName,
  schedule,
  type TaskRequest,
} from "../scheduler/index.js";

export type { SchedulerName } from "../scheduler/index.js";

/** Where the time of each scheduler run goes (ManagerMetrics), by outcome. */
export interface DecisionTiming {
  readonly decidedPlaced: { observe(seconds: number): void };
  readonly decidedUnplaced: { observe(seconds: number): void };
}

/** Every policy name, for flags and messages. */
export const SCHEDULERS: readonly SchedulerName[] = SCHEDULER_NAMES;

/**
 * The manager's side of the pure scheduler: it owns the round-robin cursor and hands the
 * scheduler a snapshot of the node views (the same objects, updated in place, so building a
 * snapshot costs nothing per placement).
 */
export class Placer {
  readonly scheduler: Scheduler;
  readonly #timing: DecisionTiming | undefined;
  #cursor = 0;

  constructor(name: SchedulerName, timing?: DecisionTiming) {
    if (!SCHEDULERS.includes(name)) {
      throw new Error(`unknown scheduler "${name}": use ${SCHEDULERS.join(", ")}`);
    }
    this.scheduler = createScheduler(name);
    this.#timing = timing;
  }

  /** Where `task` should go among `nodes`, or why it cannot go anywhere now. */
  plan(task: TaskRequest, nodes: readonly NodeView[], nowMs: number): Plan {
    const started = performance.now();
    const plan = schedule(this.scheduler, task, { nodes, now: nowMs, cursor: this.#cursor });
    this.#cursor = plan.cursor;
    const seconds = (performance.now() - started) / 1000;
    if (plan.kind === "place") this.#timing?.decidedPlaced.observe(seconds);
    else this.#timing?.decidedUnplaced.observe(seconds);
    return plan;
  }
}
