/**
 * What a revert does to secrets. A job version is immutable, secret values included, so going
 * back to version N brings back N's values: a secret rotated since then (a password changed
 * after a leak) silently returns. Nomad and Kubernetes keep secrets outside the versioned
 * spec; cube keeps them in it, so a revert says so instead. Keys are named, values never.
 */
import type { JobSpec } from "../../gen/cube/v1/job_pb.js";

/** The warnings of going from version `from` (spec `current`) back to version `to` (spec `target`). */
export function revertWarnings(
  current: JobSpec | undefined,
  target: JobSpec | undefined,
  from: bigint,
  to: bigint,
): string[] {
  const now = current?.template?.secretEnv ?? {};
  const then = target?.template?.secretEnv ?? {};
  // Own keys only: `in` would find Object.prototype's (constructor, toString) in any map.
  const differ = Object.keys(then).filter(
    (key) => Object.hasOwn(now, key) && now[key] !== then[key],
  );
  const dropped = Object.keys(now).filter((key) => !Object.hasOwn(then, key));
  const warnings: string[] = [];
  if (differ.length > 0) {
    warnings.push(
      `version ${to} has other values than version ${from} for secret_env ${list(differ)}: the revert brings version ${to}'s back (apply the job with the current values to keep them)`,
    );
  }
  if (dropped.length > 0) {
    warnings.push(
      `version ${to} has no secret_env ${list(dropped)}: its replicas run without ${dropped.length === 1 ? "it" : "them"}`,
    );
  }
  return warnings;
}

function list(keys: string[]): string {
  return keys.sort().join(", ");
}
