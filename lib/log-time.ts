/**
 * The times of container output (TaskLogsRequest.since, TaskLogsResponse.time): RFC 3339
 * with nanoseconds as the container engine writes them, the checks a `since` must pass, and
 * the order of two stamps. Shared by the worker (which reads the engine's stamps), the
 * manager (which checks `since` before it dials a worker) and the CLI (`cube logs --since`,
 * and the resume of `cube logs -f`).
 */
import type { Timestamp } from "@bufbuild/protobuf/wkt";

/** 9999-12-31T23:59:59Z, the last second RFC 3339 can write. */
const MAX_SECONDS = 253_402_300_799n;

/** How far ahead of the worker's clock a `since` may be: clocks of two machines differ. */
export const SINCE_SKEW_MS = 60_000;

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/**
 * The Timestamp an RFC 3339 time names, to the nanosecond ("2026-12-06T20:00:00Z",
 * "2026-12-06T20:00:00.123456789+01:00"); undefined when `text` is not one (a zone is
 * required: a time without one would be read in some zone the writer did not mean), or names
 * a day or hour that does not exist (Feb 30, 24:00).
 */
export function parseRfc3339(text: string): Timestamp | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as number[] as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  // setUTCFullYear, not Date.UTC: that one reads the years 0-99 as 1900-1999.
  const back = new Date(0);
  back.setUTCFullYear(year, month - 1, day);
  back.setUTCHours(hour, minute, second);
  const ms = back.getTime();
  if (
    back.getUTCFullYear() !== year ||
    back.getUTCMonth() !== month - 1 ||
    back.getUTCDate() !== day ||
    back.getUTCHours() !== hour ||
    back.getUTCMinutes() !== minute ||
    back.getUTCSeconds() !== second
  ) {
    return undefined;
  }
  let offset = 0;
  if (m[9]) {
    const hours = Number(m[10]);
    const minutes = Number(m[11]);
    if (hours > 23 || minutes > 59) return undefined;
    offset = (m[9] === "-" ? -1 : 1) * (hours * 3600 + minutes * 60);
  }
  return {
    $typeName: "google.protobuf.Timestamp",
    seconds: BigInt(ms / 1000 - offset),
    nanos: Number((m[7] ?? "").padEnd(9, "0")),
  };
}

/** `ts` in RFC 3339 UTC with all nine digits of nanoseconds, as `docker logs -t` writes it. */
export function formatRfc3339Nano(ts: Timestamp): string {
  const date = new Date(Number(ts.seconds) * 1000).toISOString().slice(0, 19);
  return `${date}.${String(ts.nanos).padStart(9, "0")}Z`;
}

/** Negative, zero or positive as `a` is before, the same as or after `b`. */
export function compareTimestamps(a: Timestamp, b: Timestamp): number {
  if (a.seconds !== b.seconds) return a.seconds < b.seconds ? -1 : 1;
  return a.nanos - b.nanos;
}

/** Whole milliseconds of `ts` (rounded down). */
export function timestampToMs(ts: Timestamp): number {
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000);
}

/**
 * What is wrong with `since` (TaskLogsRequest.since), or undefined when it is fine: a time
 * before the epoch (the engine has no output then, and takes no negative time), nanos out of
 * range, past what RFC 3339 can write, or, when `nowMs` is given (the worker, whose engine
 * stamps the output), more than {@link SINCE_SKEW_MS} ahead of it: output from then does not
 * exist yet, and a follow would wait in silence for a time that is most likely a mistake
 * (a wrong year, a local time written as UTC).
 */
export function sinceProblem(since: Timestamp, nowMs?: number): string | undefined {
  if (since.nanos < 0 || since.nanos > 999_999_999 || !Number.isInteger(since.nanos)) {
    return `since: nanos must be 0 to 999999999, not ${since.nanos}`;
  }
  if (since.seconds < 0n) {
    return `since: ${since.seconds} s is before 1970-01-01T00:00:00Z; give a time at or after it`;
  }
  if (since.seconds > MAX_SECONDS) {
    return `since: ${since.seconds} s is after 9999-12-31T23:59:59Z`;
  }
  if (nowMs !== undefined && timestampToMs(since) > nowMs + SINCE_SKEW_MS) {
    const now = new Date(nowMs).toISOString();
    return `since: ${formatRfc3339Nano(since)} is in the future (the worker's clock reads ${now}): there is no output from then yet`;
  }
  return undefined;
}

/**
 * `since` as the Docker Engine API's `since` query takes it: UNIX seconds with a fraction of
 * nine digits ("1700000000.123456789"), so no nanosecond of it is lost.
 */
export function dockerSince(since: Timestamp): string {
  return `${since.seconds}.${String(since.nanos).padStart(9, "0")}`;
}
