import type { Writable } from "node:stream";

/**
 * What commands read and write, in one object: the process's streams and environment
 * in real use, and stand-ins when a test runs a command in process.
 */
export interface Io {
  readonly stdout: Writable & { isTTY?: boolean; columns?: number };
  readonly stderr: Writable & { isTTY?: boolean };
  readonly env: NodeJS.ProcessEnv;
  /** Now, ms since the epoch. */
  now(): number;
  /**
   * Aborts on Ctrl-C (SIGINT) or SIGTERM: long-running commands (watches, logs -f)
   * end cleanly when it fires.
   */
  readonly interrupted: AbortSignal;
}

/**
 * The real process's {@link Io}. SIGINT and SIGTERM handlers are installed only when a
 * command first looks at `interrupted`, so `cube manager` and `cube worker` keep the
 * signal handling of their own process runners.
 */
export function processIo(): Io {
  let controller: AbortController | undefined;
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    now: () => Date.now(),
    get interrupted() {
      if (!controller) {
        const c = new AbortController();
        const stop = () => {
          // A second Ctrl-C means "now": whatever is still running is not worth waiting for.
          if (c.signal.aborted) process.exit(130);
          c.abort();
        };
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
        controller = c;
      }
      return controller.signal;
    },
  };
}
