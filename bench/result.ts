/** The shape of one scenario's outcome, as printed and as written to bench/results. */

/** A goal a figure is held to, checked only in full runs (quick runs only show it). */
export interface Goal {
  /** The figure (a key of `figures`, or of `ratio` when `ofRatio`) the goal is about. */
  readonly figure: string;
  /** Whether the goal is about the ratio to the baseline rather than the figure itself. */
  readonly ofRatio?: boolean;
  /** "max": the value must not exceed `limit`; "min": it must reach it. */
  readonly kind: "max" | "min";
  readonly limit: number;
  /** For people: "≤ 1.15× bare Docker". */
  readonly text: string;
}

/** One scenario's outcome. Figures are medians over `runs` runs. */
export interface ScenarioResult {
  /** Short name: "latency", "throughput", "recovery", "restart". */
  readonly name: string;
  /** One line saying what was measured. */
  readonly title: string;
  /** cube's figures, each the median over `runs` runs; keys carry their unit. */
  readonly figures: Record<string, number>;
  /** The same-run baseline for comparable figures (same keys). */
  readonly baseline: Record<string, number>;
  /** figure ÷ baseline for every key present in both. */
  readonly ratio: Record<string, number>;
  /** How many runs each figure is the median of. */
  readonly runs: number;
  /** What the baseline is, how the figures were taken, caveats. */
  readonly note: string;
  /** See {@link ScenarioOutcome.differences}. */
  readonly differences?: Readonly<Record<string, readonly string[]>>;
  readonly goals: readonly Goal[];
  /** Per goal ("figure: text"): met or not; null when not judged (quick mode). */
  readonly met: Record<string, boolean | null>;
  /** Extra detail worth keeping (per-run figures, profiles), not printed in the table. */
  readonly detail?: Record<string, unknown>;
}

/** What a scenario returns before the ratios and goals are worked out. */
export interface ScenarioOutcome {
  readonly name: string;
  readonly title: string;
  readonly figures: Record<string, number>;
  readonly baseline: Record<string, number>;
  readonly runs: number;
  readonly note: string;
  /**
   * Where a figure was measured unlike the product as shipped (its defaults, its own
   * client): figure key → each thing that differs, and why, for people; printed next to
   * the figure. A figure not named here was measured with the product's defaults.
   */
  readonly differences?: Readonly<Record<string, readonly string[]>>;
  readonly goals: readonly Goal[];
  readonly detail?: Record<string, unknown>;
}

/** Works out ratios and (unless `judge` is false) whether each goal was met. */
export function finish(outcome: ScenarioOutcome, judge: boolean): ScenarioResult {
  const ratio: Record<string, number> = {};
  for (const [key, value] of Object.entries(outcome.figures)) {
    const base = outcome.baseline[key];
    if (base !== undefined && base !== 0 && Number.isFinite(base)) ratio[key] = value / base;
  }
  const met: Record<string, boolean | null> = {};
  for (const goal of outcome.goals) {
    const value = goal.ofRatio ? ratio[goal.figure] : outcome.figures[goal.figure];
    const id = goalId(goal);
    if (!judge || value === undefined || !Number.isFinite(value)) met[id] = null;
    else met[id] = goal.kind === "max" ? value <= goal.limit : value >= goal.limit;
  }
  return { ...outcome, ratio, met };
}

/** How a goal is named in {@link ScenarioResult.met}: its figure and its text. */
export function goalId(goal: Goal): string {
  return `${goal.figure}: ${goal.text}`;
}

/** A scenario's result when it could not run to the end. */
export function failed(name: string, title: string, error: unknown): ScenarioResult {
  const message = error instanceof Error ? error.message : String(error);
  return {
    name,
    title,
    figures: {},
    baseline: {},
    ratio: {},
    runs: 0,
    note: `FAILED: ${message}`,
    goals: [],
    met: {},
  };
}
