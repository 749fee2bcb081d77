import { CliError } from "./cli-error.js";

/**
 * The environment variable `name` parsed by `parse`, or undefined when it is unset or empty;
 * a value `parse` refuses is a CliError naming the variable.
 */
export function envSetting<T>(
  env: NodeJS.ProcessEnv,
  name: string,
  parse: (value: string) => T,
): T | undefined {
  const value = env[name];
  if (!value) return undefined;
  try {
    return parse(value);
  } catch (error) {
    throw new CliError(`${name}: ${(error as Error).message}`);
  }
}
