/**
 * Parses "KEY=VALUE" flags (--env, --label). The value may hold "=" and may be empty.
 * Without "=", `fallback(key)` supplies the value (as `docker run -e KEY` takes it from the
 * caller's environment); when it gives nothing, the flag is refused.
 */
export function parseKeyValue(
  input: string,
  what: string,
  fallback?: (key: string) => string | undefined,
): [string, string] {
  const eq = input.indexOf("=");
  const key = (eq < 0 ? input : input.slice(0, eq)).trim();
  if (key === "") throw new Error(`"${input}" is not a ${what}: use KEY=VALUE`);
  if (eq >= 0) return [key, input.slice(eq + 1)];
  const value = fallback?.(key);
  if (value === undefined) {
    throw new Error(
      fallback
        ? `"${input}" is not a ${what}: use KEY=VALUE (${key} is not set in your environment either)`
        : `"${input}" is not a ${what}: use KEY=VALUE`,
    );
  }
  return [key, value];
}

/**
 * Collects repeated KEY=VALUE flags into a record; a later key wins. Object.fromEntries makes
 * every key its own, `__proto__` too (an assignment would set the prototype instead).
 */
export function toRecord(pairs: readonly (readonly [string, string])[]): Record<string, string> {
  return Object.fromEntries(pairs);
}
