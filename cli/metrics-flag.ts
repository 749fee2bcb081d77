import { envFlag } from "./env-switch.js";

/** The help of `--no-metrics`, the same on `cube manager`, `cube worker` and `cube dev`. */
export const NO_METRICS_HELP =
  "do not serve GET /metrics (Prometheus text format, readable without a token) on the listen port (env CUBE_METRICS=off)";

/**
 * Whether a server serves GET /metrics: yes unless `--no-metrics` was given (commander sets
 * the flag false) or CUBE_METRICS is off (off, false, 0 or no); a CUBE_METRICS that is neither
 * on nor off is a usage error.
 */
export function metricsWanted(flag: boolean | undefined, env: NodeJS.ProcessEnv): boolean {
  return flag !== false && (envFlag(env, "CUBE_METRICS") ?? true);
}
