import { CommanderError } from "commander";
import { envSwitch } from "../lib/env-setting.js";
import { printable } from "../lib/printable-text.js";
import { CliError } from "./cli-error.js";
import { ExitCode } from "./exit-codes.js";
import type { Io } from "./io.js";
import { createProgram } from "./program.js";

/**
 * Runs `cube` with these arguments (without "node" and the script) and resolves with the
 * exit code. Errors become one line on stderr, "cube: …", never a stack trace (unless
 * CUBE_DEBUG is on: 1, true, yes or on), their control and bidirectional characters
 * escaped (a message may quote the manager, and through it a worker: lib/printable-text.ts);
 * usage errors have commander's own words and exit 2.
 */
export async function runCli(argv: readonly string[], io: Io): Promise<number> {
  let debug: boolean;
  try {
    debug = envSwitch(io.env, "CUBE_DEBUG") ?? false;
  } catch (error) {
    io.stderr.write(`cube: ${(error as Error).message}\n`);
    return ExitCode.Usage;
  }
  const program = createProgram(io);
  try {
    await program.parseAsync([...argv], { from: "user" });
    return ExitCode.Ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and --version "fail" with exit code 0; everything else is a usage error.
      return error.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage;
    }
    if (debug) io.stderr.write(`${(error as Error)?.stack ?? String(error)}\n`);
    if (error instanceof CliError) {
      if (error.message !== "") io.stderr.write(`cube: ${printable(error.message)}\n`);
      return error.exitCode;
    }
    io.stderr.write(`cube: ${printable(error instanceof Error ? error.message : String(error))}\n`);
    return ExitCode.Error;
  }
}
