/**
 * Whether CUBE_METRICS leaves GET /metrics on: yes unless it is off, false, 0 or no. The
 * manager's and the worker's `--no-metrics` flags turn it off over this.
 */
export function metricsFromEnv(env: NodeJS.ProcessEnv): boolean {
  return !/^(off|false|0|no)$/i.test(env.CUBE_METRICS?.trim() ?? "");
}
