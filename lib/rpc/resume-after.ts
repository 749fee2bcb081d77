import { Code, ConnectError } from "@connectrpc/connect";

/**
 * The trailer of a WatchTasks cut off for falling behind (RESOURCE_EXHAUSTED): the revision
 * to watch again after. The other RESOURCE_EXHAUSTED answers (a token's call rate, its open
 * streams) carry none: waiting mends those, watching again at once would not.
 */
export const RESUME_AFTER_TRAILER = "cube-resume-after";

/** The error that cuts off a watcher `behind` events behind, after revision `last`. */
export function fellBehind(behind: number, last: bigint): ConnectError {
  return new ConnectError(
    `this watch fell ${behind} events behind and was cut off: watch again with after_revision ${last}`,
    Code.ResourceExhausted,
    { [RESUME_AFTER_TRAILER]: String(last) },
  );
}

/** The revision a watch cut off for falling behind may resume after; undefined for any other error. */
export function resumeAfter(error: unknown): bigint | undefined {
  if (!(error instanceof ConnectError) || error.code !== Code.ResourceExhausted) return undefined;
  const value = error.metadata.get(RESUME_AFTER_TRAILER);
  return value !== null && /^\d+$/.test(value) ? BigInt(value) : undefined;
}
