/**
 * `cube logs --since`: reading the flag (a duration or an RFC 3339 time) and the Timestamp it
 * names. What a followed log resumes from is lib/log-resume.ts.
 */
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { parseRfc3339, sinceProblem } from "../lib/log-time.js";
import { parseDuration } from "../lib/parse-duration.js";

/** `--since` as given: a time, or how long before now (read when the command runs). */
export type SinceFlag = { readonly at: Timestamp } | { readonly agoMs: number };

/**
 * Parses `--since`: a duration (`10m`, `1h30m`: that long before now) or an RFC 3339 time
 * with its zone (`2026-12-06T20:00:00Z`, nanoseconds allowed), as `docker logs --since` takes
 * them. Throws a message naming the input.
 */
export function parseSince(input: string): SinceFlag {
  const at = parseRfc3339(input.trim());
  if (at) {
    const problem = sinceProblem(at);
    if (problem) throw new Error(`"${input}": ${problem.replace(/^since: /, "")}`);
    return { at };
  }
  try {
    // Any length back: no timer waits on it.
    return { agoMs: parseDuration(input, Number.MAX_SAFE_INTEGER) };
  } catch {
    throw new Error(
      `"${input}" is neither a duration (10m, 1h30m) nor an RFC 3339 time with its zone (2026-12-06T20:00:00Z)`,
    );
  }
}

/** The Timestamp `flag` names, `nowMs` being now; a duration past the epoch is the epoch. */
export function sinceTimestamp(flag: SinceFlag, nowMs: number): Timestamp {
  if ("at" in flag) return flag.at;
  const ms = Math.max(0, nowMs - flag.agoMs);
  return {
    $typeName: "google.protobuf.Timestamp",
    seconds: BigInt(Math.floor(ms / 1000)),
    nanos: (ms % 1000) * 1_000_000,
  };
}
