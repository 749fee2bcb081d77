import { Code, ConnectError } from "@connectrpc/connect";
import { sleep } from "../lib/sleep.js";
import { CliError } from "./cli-error.js";
import type { Io } from "./io.js";

/**
 * Whether a watch that failed with `error` is worth opening again: the manager went away or
 * restarted (the deployment, drain or task it was following carries on without us).
 */
export function isTransient(error: unknown): boolean {
  if (!(error instanceof ConnectError)) return false;
  return [Code.Unavailable, Code.Canceled, Code.Aborted, Code.Unknown, Code.Internal].includes(
    error.code,
  );
}

/**
 * Opens a watch and hands each message to `look` until it returns true, opening it again
 * whenever it ends (the manager shutting down) or fails as a restart of the manager explains
 * (saying once that the manager was lost). A CliError from `look`, `signal` aborting, or any
 * other error ends it with that error.
 */
export async function watchUntil<T>(
  io: Io,
  address: string,
  signal: AbortSignal,
  open: () => AsyncIterable<T>,
  look: (message: T) => boolean | Promise<boolean>,
): Promise<void> {
  let lostOnce = false;
  for (;;) {
    try {
      for await (const message of open()) if (await look(message)) return;
    } catch (error) {
      if (error instanceof CliError || signal.aborted || !isTransient(error)) throw error;
      if (!lostOnce) {
        io.stderr.write(`lost the manager at ${address}, reconnecting…\n`);
        lostOnce = true;
      }
    }
    await sleep(500, signal);
    signal.throwIfAborted();
  }
}
