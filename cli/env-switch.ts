import { envSwitch } from "../lib/env-setting.js";
import { usageError } from "./cli-error.js";

/**
 * A boolean CUBE_* variable as `cube` reads it (lib/env-setting.ts {@link envSwitch}: 1, true,
 * yes, on or 0, false, no, off, any case; unset or empty is undefined): any other value is a
 * usage error naming the variable, exit 2, never a silent default.
 */
export function envFlag(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  try {
    return envSwitch(env, name);
  } catch (error) {
    throw usageError((error as Error).message);
  }
}
