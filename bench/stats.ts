/** Small statistics over samples: medians of runs, percentiles of latencies. */

/**
 * The p-th percentile (0–100) of `values` by the nearest-rank method: always one of the
 * samples, never an interpolation. NaN for no samples.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

/** The median; for an even count, the mean of the two middle samples. NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/**
 * Per-key medians of several runs' figures: `[{a: 1}, {a: 3}, {a: 2}]` → `{a: 2}`.
 * A key missing from a run is left out of that key's median.
 */
export function medianOfRuns(runs: readonly Record<string, number>[]): Record<string, number> {
  const keys = new Set(runs.flatMap((r) => Object.keys(r)));
  const out: Record<string, number> = {};
  for (const key of keys) {
    out[key] = median(runs.flatMap((r) => (key in r ? [r[key] as number] : [])));
  }
  return out;
}

/** Rounds for people: 3 significant digits below 100, whole numbers above. */
export function round(value: number): number {
  if (!Number.isFinite(value)) return value;
  if (Math.abs(value) >= 100) return Math.round(value);
  return Number(value.toPrecision(3));
}
