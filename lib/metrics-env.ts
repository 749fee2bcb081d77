import { envSwitch } from "./env-setting.js";

/**
 * Whether CUBE_METRICS leaves GET /metrics on: yes unless it is off (off, false, 0 or no; see
 * {@link envSwitch}), which throws naming it when it is neither on nor off. The manager's and
 * the worker's `--no-metrics` flags turn it off over this.
 */
export function metricsFromEnv(env: NodeJS.ProcessEnv): boolean {
  return envSwitch(env, "CUBE_METRICS") ?? true;
}
