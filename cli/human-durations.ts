import { parseDuration } from "../lib/parse-duration.js";

/** A duration as the protobuf JSON mapping writes it ("1.5s"); anything else is converted. */
const PROTO_DURATION = /^-?\d+(\.\d+)?s$/;

/** The duration fields of a TaskSpec, by path (lowerCamel and as in the .proto). */
export const SPEC_DURATIONS: readonly (readonly string[])[] = [
  ["restartPolicy", "backoff"],
  ["restart_policy", "backoff"],
  ["restartPolicy", "maxBackoff"],
  ["restart_policy", "max_backoff"],
  ["healthCheck", "interval"],
  ["health_check", "interval"],
  ["healthCheck", "timeout"],
  ["health_check", "timeout"],
  ["healthCheck", "startPeriod"],
  ["health_check", "start_period"],
  ["stopTimeout"],
  ["stop_timeout"],
];

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/**
 * `doc` with the duration at `path` written "1.5s" when it was "1m30s" or "500ms"; a string
 * that is no duration throws a message naming the field (fromJson's names only the type).
 */
function withDuration(
  doc: Record<string, unknown>,
  path: readonly string[],
  at: string,
): Record<string, unknown> {
  const [key, ...rest] = path as [string, ...string[]];
  const value = doc[key];
  const here = at ? `${at}.${key}` : key;
  if (rest.length === 0) {
    if (typeof value !== "string" || PROTO_DURATION.test(value)) return doc;
    try {
      return { ...doc, [key]: `${parseDuration(value, Number.MAX_SAFE_INTEGER) / 1000}s` };
    } catch (error) {
      throw new Error(`${here}: ${(error as Error).message}`);
    }
  }
  if (!isObject(value)) return doc;
  return { ...doc, [key]: withDuration(value, rest, here) };
}

/**
 * `doc` (a file's JSON, before `fromJson`) with the durations at `paths` turned from what
 * people write ("10s", "1m30s", "500ms") into the protobuf JSON mapping's "90s". A string
 * that is no duration throws, naming its field; other values are left for `fromJson`. The
 * bounds are the server's to check.
 */
export function withHumanDurations(
  doc: Record<string, unknown>,
  paths: readonly (readonly string[])[],
): Record<string, unknown> {
  let out = doc;
  for (const path of paths) out = withDuration(out, path, "");
  return out;
}
