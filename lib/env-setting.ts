/**
 * The environment variable `name` parsed by `parse`, or undefined when it is unset or empty;
 * a value `parse` refuses throws an Error naming the variable ("CUBE_X: …").
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
    throw new Error(`${name}: ${(error as Error).message}`);
  }
}

/** What a switch's variable takes for on and for off, any case. */
const ON = ["1", "true", "yes", "on"];
const OFF = ["0", "false", "no", "off"];

/**
 * A switch as a variable gives it: true for 1, true, yes or on, false for 0, false, no or off
 * (any case, blanks around ignored); anything else throws, so that `CUBE_TLS=ye` is refused
 * rather than read as off.
 */
export function parseSwitch(value: string): boolean {
  const word = value.trim().toLowerCase();
  if (ON.includes(word)) return true;
  if (OFF.includes(word)) return false;
  throw new Error(`"${value}" is neither on (${ON.join(", ")}) nor off (${OFF.join(", ")})`);
}

/**
 * The switch in the environment variable `name` ({@link parseSwitch}), or undefined when it is
 * unset or empty; a value that is neither on nor off throws an Error naming the variable. The
 * one reading of every boolean CUBE_* variable.
 */
export function envSwitch(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  return envSetting(env, name, parseSwitch);
}
