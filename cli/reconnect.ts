import { Code, ConnectError } from "@connectrpc/connect";
import { resumeAfter } from "../lib/rpc/resume-after.js";
import { sleep } from "../lib/sleep.js";
import { CliError } from "./cli-error.js";
import { CUT_CODES, certificateRefused, failedBeforeSending } from "./describe-error.js";
import type { Io } from "./io.js";

/**
 * Whether a watch that failed with `error` is worth opening again: the manager went away or
 * restarted (the deployment, drain or task it was following carries on without us). A
 * certificate the manager's is refused is not (it came back with another CA): retrying would
 * wait for good in silence, so the command ends with the TLS error instead. Nor is a request
 * this process could not encode ({@link failedBeforeSending}): it would fail the same way
 * for ever.
 */
export function isTransient(error: unknown): boolean {
  if (!(error instanceof ConnectError) || certificateRefused(error)) return false;
  if (failedBeforeSending(error)) return false;
  return CUT_CODES.includes(error.code);
}

/** Said once on stderr when a command that follows the manager loses it. */
export function lostLine(address: string): string {
  return `lost the manager at ${address}, reconnecting…`;
}

/** Said on stderr when it answers again. */
export function backLine(address: string): string {
  return `reconnected to the manager at ${address}`;
}

/**
 * Opens a watch and hands each message to `look` until it returns true, opening it again
 * whenever it ends (the manager shutting down) or fails as a restart of the manager explains:
 * one line on stderr when the manager is lost, and one when a reopened watch brings its first
 * message (it is back), so one pair a restart. A CliError from `look`, `signal` aborting, or
 * any other error ends it with that error.
 */
export async function watchUntil<T>(
  io: Io,
  address: string,
  signal: AbortSignal,
  open: () => AsyncIterable<T>,
  look: (message: T) => boolean | Promise<boolean>,
): Promise<void> {
  // Said lost, and not yet back: the next message says it is.
  let lost = false;
  for (;;) {
    try {
      for await (const message of open()) {
        if (lost) {
          io.stderr.write(`${backLine(address)}\n`);
          lost = false;
        }
        if (await look(message)) return;
      }
    } catch (error) {
      if (error instanceof CliError || signal.aborted || !isTransient(error)) throw error;
      if (!lost) {
        io.stderr.write(`${lostLine(address)}\n`);
        lost = true;
      }
    }
    await sleep(500, signal);
    signal.throwIfAborted();
  }
}

/** The error a watch ends with when Ctrl-C comes between two tries: as a cut call's. */
function interrupted(): ConnectError {
  return new ConnectError("interrupted", Code.Canceled);
}

/**
 * Follows a watch for as long as the command runs (`cube events`, `ps --watch`, `nodes
 * --watch`, `job ls|status --watch`), through restarts of the manager.
 *
 * `open(resumed)` reads what the watch starts from (a list, a revision) with a unary call,
 * whose answer shows that the manager is there, and then opens the watch; `each` gets its
 * messages. The first `open` fails as it fails: the manager was never reached (a wrong address,
 * TLS, a token), and the command ends with that error. Once it has answered, a watch that ends
 * (the manager shutting down) or fails as a restart explains ({@link isTransient}) is followed
 * by one line on stderr, `lost the manager at ADDR, reconnecting…`, then `open(true)` every
 * 500 ms until it answers (up to 8 s apart while reopened watches fail before any message), then one line, `reconnected to the manager at ADDR`; stdout stays
 * the command's own. Ctrl-C (`signal`) ends it with a CANCELED ConnectError, as a cut call does
 * (see stoppedByUser); a CliError or any other error (a revoked token, NOT_FOUND…) ends it with
 * that error, even between two tries. A watch cut off for falling behind (RESOURCE_EXHAUSTED
 * with a resume revision, lib/rpc/resume-after.ts) is opened again at once with `open(true)`,
 * saying so on stderr. `note`, when given, gets the lost line while the manager
 * is away and undefined once it is back (a table on a terminal shows it, as its redraws
 * clear the screen).
 */
export async function followWatch<T>(
  io: Io,
  address: string,
  signal: AbortSignal,
  open: (resumed: boolean) => Promise<AsyncIterable<T>>,
  each: (message: T) => void | Promise<void>,
  note?: (text: string | undefined) => void,
): Promise<void> {
  const resumable = (error: unknown) =>
    !(error instanceof CliError) && !signal.aborted && isTransient(error);
  let watch = await open(false);
  // Reopened watches that failed before a single message: each doubles the pause (500 ms to
  // 8 s), so a manager that answers but whose watch keeps failing is not hammered.
  let barren = 0;
  for (;;) {
    let delivered = false;
    try {
      for await (const message of watch) {
        delivered = true;
        await each(message);
      }
    } catch (error) {
      if (!signal.aborted && resumeAfter(error) !== undefined) {
        // Cut off for reading too slowly (a burst of events, a slow pipe): the manager is
        // there; open it again at once, from where this command got to.
        io.stderr.write(
          "the watch fell behind the manager's events and was cut off; carrying on from the last one read\n",
        );
        watch = await open(true);
        continue;
      }
      if (!resumable(error)) throw error;
    }
    if (signal.aborted) throw interrupted();
    barren = delivered ? 0 : barren + 1;
    const lost = lostLine(address);
    io.stderr.write(`${lost}\n`);
    note?.(lost);
    for (;;) {
      await sleep(Math.min(500 * 2 ** barren, 8000), signal);
      if (signal.aborted) throw interrupted();
      try {
        watch = await open(true);
        break;
      } catch (error) {
        if (!resumable(error)) throw error;
      }
    }
    io.stderr.write(`${backLine(address)}\n`);
    note?.(undefined);
  }
}
