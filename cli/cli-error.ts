import { UnsafeDataDirError } from "../lib/data-dir.js";
import { ExitCode } from "./exit-codes.js";

/**
 * An error meant for the person at the terminal: `cube` prints its message as one line,
 * without a stack trace, and exits with its code.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = ExitCode.Error,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/** A bad flag value: printed like commander's own usage errors, exit code 2. */
export function usageError(message: string): CliError {
  return new CliError(message, ExitCode.Usage);
}

/**
 * Why a server (`what`: manager, worker) did not start, for `cube`: a data directory it
 * refuses ({@link UnsafeDataDirError}) is a usage error, exit 2, as a bad --data-dir is;
 * anything else exit 1.
 */
export function startError(what: string, error: unknown): CliError {
  const message = `cannot start the ${what}: ${(error as Error)?.message ?? String(error)}`;
  return error instanceof UnsafeDataDirError ? usageError(message) : new CliError(message);
}
