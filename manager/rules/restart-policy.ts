import { durationMs } from "@bufbuild/protobuf/wkt";
import { RestartMode, type Task } from "../../gen/cube/v1/task_pb.js";

/** Restarts allowed when the policy says 0: the book's limit. */
export const DEFAULT_MAX_RESTARTS = 3;
/** Wait before the first restart when the policy gives none. */
export const DEFAULT_BACKOFF_MS = 100;
/** Cap of the doubled wait when the policy gives none. */
export const DEFAULT_MAX_BACKOFF_MS = 10_000;

/** Why a task ended, as the restart policy sees it. */
export type EndKind = "failed" | "completed" | "unhealthy";

/** What to do about a task that ended or turned unhealthy. */
export type RestartDecision =
  | { readonly kind: "none" }
  | {
      readonly kind: "restart";
      readonly attempt: number;
      readonly max: number;
      readonly delayMs: number;
    }
  | { readonly kind: "give-up"; readonly max: number };

/** Restarts allowed by the task's policy. */
export function maxRestarts(task: Task): number {
  return task.spec?.restartPolicy?.maxRestarts || DEFAULT_MAX_RESTARTS;
}

/**
 * The wait before restart number `attempt` (1-based): `backoff` doubled for each earlier
 * restart, capped at `max_backoff`.
 */
export function backoffMs(task: Task, attempt: number): number {
  const policy = task.spec?.restartPolicy;
  const base = policy?.backoff ? durationMs(policy.backoff) : DEFAULT_BACKOFF_MS;
  const cap = policy?.maxBackoff ? durationMs(policy.maxBackoff) : DEFAULT_MAX_BACKOFF_MS;
  return Math.min(cap, base * 2 ** Math.max(0, attempt - 1));
}

/**
 * Applies the restart policy: never restarts a task stopped on request; `on-failure` restarts
 * failures (exit non-zero, failed start, failed health check); `always` also restarts a task
 * that completed. `restart_count` counts every restart and move, and the policy allows
 * `max_restarts` of them; past that it gives up.
 */
export function decideRestart(task: Task, end: EndKind): RestartDecision {
  const mode = task.spec?.restartPolicy?.mode ?? RestartMode.UNSPECIFIED;
  const wanted =
    mode === RestartMode.ALWAYS || (mode === RestartMode.ON_FAILURE && end !== "completed");
  if (!wanted) return { kind: "none" };
  const max = maxRestarts(task);
  if (task.restartCount >= max) return { kind: "give-up", max };
  const attempt = task.restartCount + 1;
  return { kind: "restart", attempt, max, delayMs: backoffMs(task, attempt) };
}

// Moved to lib/format-ms.ts (the worker's pull messages use it too); still exported from here,
// where the rules and their tests have always imported it.
export { formatMs } from "../../lib/format-ms.js";
