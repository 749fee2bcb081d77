import { durationMs } from "@bufbuild/protobuf/wkt";
import type { TaskSpec } from "../gen/cube/v1/task_pb.js";

/** The stop grace of a task that sets no `stop_timeout`: Docker's and Swarm's 10 s. */
export const DEFAULT_STOP_GRACE_MS = 10_000;

/**
 * How long a stop of the task's container waits after SIGTERM before SIGKILL: the spec's
 * `stop_timeout` when set (0 kills at once, as `docker stop -t 0`), else `fallbackMs`. Never
 * negative, whatever a record from elsewhere holds.
 */
export function stopGraceMs(
  spec: TaskSpec | undefined,
  fallbackMs: number = DEFAULT_STOP_GRACE_MS,
): number {
  const timeout = spec?.stopTimeout;
  return timeout === undefined ? fallbackMs : Math.max(0, durationMs(timeout));
}
