import { MAX_TIMER_MS } from "./clock.js";

/**
 * Durations as Go and most ops tools write them: a number with a unit (ms, s, m, h),
 * several parts allowed ("1m30s"), fractions allowed ("1.5s"). A bare number other than
 * 0 is refused: "500" could mean 500 ms or 500 s, and guessing wrong is worse than asking.
 */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Durations in the environment: "2s" like the flags, or a bare number of ms as manager/main.ts
 * reads them; at most `maxMs` (as {@link parseDuration}) either way.
 */
export function parseEnvDuration(value: string, maxMs: number = MAX_TIMER_MS): number {
  return /^\s*\d+\s*$/.test(value)
    ? withinMax(value, Number(value), maxMs)
    : parseDuration(value, maxMs);
}

/**
 * Parses "500ms", "2s", "1m30s" into milliseconds; throws a message naming the input. Above
 * `maxMs` (by default {@link MAX_TIMER_MS}: what a timer waits on, so `--timeout 600h` does not
 * give up at once) is refused; a duration no timer waits on (a token's TTL) may pass a larger one.
 */
export function parseDuration(input: string, maxMs: number = MAX_TIMER_MS): number {
  const text = input.trim();
  if (text === "0") return 0;
  const part = /(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)/y;
  let total = 0;
  let at = 0;
  while (at < text.length) {
    part.lastIndex = at;
    const m = part.exec(text);
    if (!m) break;
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
    at = part.lastIndex;
  }
  if (text === "" || at !== text.length) {
    throw new Error(`"${input}" is not a duration: use a number with a unit, e.g. 500ms, 2s, 1m`);
  }
  return withinMax(input, Math.round(total), maxMs);
}

function withinMax(input: string, ms: number, maxMs: number): number {
  if (ms <= maxMs) return ms;
  const most =
    maxMs === MAX_TIMER_MS
      ? "596h31m23s (2147483647ms, about 24.8 days: the longest a timer can wait)"
      : `${maxMs}ms`;
  throw new Error(`"${input.trim()}" is too long: at most ${most}`);
}

/**
 * How long ago, the way `kubectl get` prints AGE: "45s", "3m20s", "25m", "5h12m", "3d".
 * More detail while it is young, less as it gets old.
 */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}
