import { createLogger } from "../lib/logger.js";
import { stopOnSignals } from "../lib/stop-on-signals.js";
import { startWorker, type WorkerHandle, type WorkerOptions } from "./index.js";

/** {@link WorkerOptions}, plus how long a signalled shutdown may take. */
export interface WorkerProcessOptions extends WorkerOptions {
  /** After SIGINT/SIGTERM, exit anyway once this passes; default 10 s. */
  shutdownTimeoutMs?: number;
}

/**
 * Runs a worker as the process's main work (`cube worker`): starts it, and on SIGINT or
 * SIGTERM closes it gracefully — stop accepting, flush pending updates, tell the manager it
 * is restarting, close the stream — then exits 0, leaving containers running for the next
 * start to re-adopt.
 * A second signal, or the deadline, exits at once (1). A stray rejected promise is
 * logged, not fatal: bad input must never take the worker down.
 */
export async function runWorkerProcess(options: WorkerProcessOptions): Promise<WorkerHandle> {
  const logger = options.logger ?? createLogger("worker");
  process.on("unhandledRejection", (reason) => {
    logger.error({ err: reason }, "unhandled rejection (ignored)");
  });
  const handle = await startWorker({ ...options, logger });
  const timeoutMs = options.shutdownTimeoutMs ?? 10_000;
  let signalled = "";
  stopOnSignals({
    onStop: (signal) => {
      signalled = signal;
      logger.info({ signal }, "shutting down");
    },
    // A signal is how a service manager restarts its agent (an upgrade, a restart): the
    // manager is told so, and waits its restart grace before it replaces anything.
    close: () => handle.close({ restarting: true, reason: signalled }),
    onError: (error) => logger.error({ err: error }, "shutdown failed"),
    secondSignalExitCode: 1,
    deadline: {
      ms: timeoutMs,
      onExpired: () => logger.error({ timeoutMs }, "shutdown took too long: exiting"),
    },
  });
  return handle;
}
