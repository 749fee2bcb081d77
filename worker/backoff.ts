/** Bounds of a reconnect back-off. */
export interface BackoffOptions {
  /** First delay, before jitter. */
  readonly baseMs: number;
  /** Largest delay, before jitter. */
  readonly maxMs: number;
}

/**
 * The worker's reconnect back-off: 100 ms doubling up to 1 s. Short, so that a worker cut
 * off by a partition is back (and its duplicates sorted out) within a second or two of the
 * link's return; a dial that finds nobody listening costs the manager's host next to nothing.
 */
export const RECONNECT_BACKOFF: BackoffOptions = { baseMs: 100, maxMs: 1000 };

/**
 * Delay before reconnect attempt `attempt` (0 for the first retry): exponential, capped,
 * with "equal jitter" — somewhere between half and all of the capped delay — so workers
 * cut off together by a manager restart do not all dial back in the same millisecond,
 * yet none waits much less than the back-off asks.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = RECONNECT_BACKOFF,
  random: () => number = Math.random,
): number {
  const capped = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(attempt, 30));
  return capped / 2 + random() * (capped / 2);
}
