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

/** Milliseconds for people: 850 → "850ms", 1500 → "1.5s", 150000 → "2m30s". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1).replace(/\.0$/, "")}s`;
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (h > 0) return `${h}h${m > 0 ? `${m}m` : ""}`;
  return `${m}m${rest > 0 ? `${rest}s` : ""}`;
}
