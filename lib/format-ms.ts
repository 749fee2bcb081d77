/** How {@link formatMs} prints a duration under a second. */
export interface FormatMsOptions {
  /**
   * Round it to whole milliseconds (the default): 250.4 → "250ms". False prints it as given,
   * 250.4 → "250.4ms", as the worker's pull-stall message always has.
   */
  readonly roundMs?: boolean;
}

/**
 * A short duration for messages, the way people write one: 250 → "250ms", 1500 → "1.5s",
 * 60000 → "60s" (one decimal at most, none when it is 0). No minutes: the waits it names
 * (restart backoffs, heartbeats, pull stalls) are read in seconds.
 */
export function formatMs(ms: number, options: FormatMsOptions = {}): string {
  if (ms < 1000) return `${options.roundMs === false ? ms : Math.round(ms)}ms`;
  return `${Number((ms / 1000).toFixed(1))}s`;
}
