/** How {@link stopOnSignals} drains a process. */
export interface StopOnSignalsOptions {
  /** Said once, at the first signal, before `close` starts. */
  onStop: (signal: NodeJS.Signals) => void;
  /** The graceful close: the process exits 0 when it resolves. */
  close: () => Promise<void>;
  /** Said when `close` rejects; the process then exits 1. */
  onError: (error: unknown) => void;
  /** Exit code of a second signal, which does not wait (default 130, the shell's for SIGINT). */
  secondSignalExitCode?: number;
  /** When set, `close` gets this long before the process exits 1 anyway. */
  deadline?: { ms: number; onExpired: () => void };
}

/**
 * SIGINT and SIGTERM drain the process: the first runs the graceful close (bounded by the
 * deadline, when given) and exits; a second exits at once, for the impatient.
 */
export function stopOnSignals(options: StopOnSignalsOptions): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(options.secondSignalExitCode ?? 130);
    stopping = true;
    options.onStop(signal);
    if (options.deadline) {
      const { ms, onExpired } = options.deadline;
      setTimeout(() => {
        onExpired();
        process.exit(1);
      }, ms).unref();
    }
    options.close().then(
      () => process.exit(0),
      (error: unknown) => {
        options.onError(error);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}
