import { durationMs } from "@bufbuild/protobuf/wkt";
import { RestartMode, type Task } from "../../gen/cube/v1/task_pb.js";
import { restartsSoFar } from "../core/lifecycle.js";

export { RESTART_RESET_MS, restartsSoFar } from "../core/lifecycle.js";

/** Restarts allowed when the policy says 0 (`on-failure`; `always` has no limit then): the book's limit. */
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

/**
 * Restarts allowed by the task's policy in a row (see {@link decideRestart}): `max_restarts`
 * when set; when 0, {@link DEFAULT_MAX_RESTARTS} for `on-failure` and no limit (`Infinity`)
 * for `always`, which restarts for ever as Docker's does.
 */
export function maxRestarts(task: Task): number {
  const policy = task.spec?.restartPolicy;
  if (policy?.maxRestarts) return policy.maxRestarts;
  return policy?.mode === RestartMode.ALWAYS ? Number.POSITIVE_INFINITY : DEFAULT_MAX_RESTARTS;
}

/** Restart `attempt` as people read it: "2/3", or "2" when there is no limit. */
export function formatAttempt(attempt: number, max: number): string {
  return Number.isFinite(max) ? `${attempt}/${max}` : `${attempt}`;
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
 * Applies the restart policy to `task` as it was just before it ended (or turned unhealthy),
 * at `nowMs` of the manager's clock: never restarts a task stopped on request; `on-failure`
 * restarts failures (exit non-zero, failed start, failed health check); `always` also
 * restarts a task that completed. `restart_count` counts the restarts since the task last
 * ran ready (RUNNING, and HEALTHY when it has a check) for {@link RESTART_RESET_MS}: a copy
 * that ran that long starts the count — and the back-off — afresh ({@link restartsSoFar}),
 * as Kubernetes resets its crash back-off. A move off a worker that went DOWN is not a
 * restart. The policy allows {@link maxRestarts} restarts in a row; past that it gives up.
 */
export function decideRestart(task: Task, end: EndKind, nowMs: number): RestartDecision {
  const mode = task.spec?.restartPolicy?.mode ?? RestartMode.UNSPECIFIED;
  const wanted =
    mode === RestartMode.ALWAYS || (mode === RestartMode.ON_FAILURE && end !== "completed");
  if (!wanted) return { kind: "none" };
  const max = maxRestarts(task);
  const count = restartsSoFar(task, nowMs);
  if (count >= max) return { kind: "give-up", max };
  const attempt = count + 1;
  return { kind: "restart", attempt, max, delayMs: backoffMs(task, attempt) };
}

// Moved to lib/format-ms.ts (the worker's pull messages use it too); still exported from here,
// where the rules and their tests have always imported it.
export { formatMs } from "../../lib/format-ms.js";
