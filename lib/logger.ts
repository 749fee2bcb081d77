import { type Logger, pino } from "pino";

export type { Logger } from "pino";

/**
 * The structured logger every process uses: one JSON line per event on stderr, so
 * stdout stays free for what a command prints. CUBE_LOG_LEVEL sets the level
 * (default info; "silent" in tests that do not read logs).
 */
export function createLogger(name: string, level = process.env.CUBE_LOG_LEVEL ?? "info"): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination(2));
}
