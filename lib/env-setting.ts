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
