import { usageError } from "./cli-error.js";

/** The levels pino knows, which --log-level and CUBE_LOG_LEVEL take. */
const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** Parses a log level; throws a message listing the levels. */
export function parseLogLevel(input: string): string {
  if (!LOG_LEVELS.includes(input)) {
    throw new Error(`"${input}" is not a log level: use ${LOG_LEVELS.join(", ")}`);
  }
  return input;
}

/**
 * Refuses a CUBE_LOG_LEVEL that is set but no level (a usage error naming it), before a
 * server starts: pino would throw its own words, exit 1, once the logger is made.
 */
export function checkLogLevelEnv(env: NodeJS.ProcessEnv): void {
  const level = env.CUBE_LOG_LEVEL;
  if (level === undefined) return;
  try {
    parseLogLevel(level);
  } catch (error) {
    throw usageError(`CUBE_LOG_LEVEL: ${(error as Error).message}`);
  }
}
