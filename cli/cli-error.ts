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
