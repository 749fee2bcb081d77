import { createLogger } from "../lib/logger.js";
import { startWorker, type WorkerHandle, type WorkerOptions } from "./index.js";

/** {@link WorkerOptions}, plus how long a signalled shutdown may take. */
export interface WorkerProcessOptions extends WorkerOptions {
  /** After SIGINT/SIGTERM, exit anyway once this passes; default 10 s. */
  shutdownTimeoutMs?: number;
}

/**
 * Runs a worker as the process's main work (`cube worker`): starts it, and on SIGINT or
 * SIGTERM closes it gracefully — stop accepting, flush pending updates, close the
 * stream — then exits 0, leaving containers running for the next start to re-adopt.
 * A second signal, or the deadline, exits at once (1). A stray rejected promise is
 * logged, not fatal: bad input must never take the worker down.
 */
export async function runWorkerProcess(options: WorkerProcessOptions): Promise<WorkerHandle> {
  const logger = options.logger ?? createLogger("worker");
  process.on("unhandledRejection", (reason) => {
    logger.error({ err: reason }, "unhandled rejection (ignored)");
  });
  const handle = await startWorker({ ...options, logger });
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    const timeoutMs = options.shutdownTimeoutMs ?? 10_000;
    setTimeout(() => {
      logger.error({ timeoutMs }, "shutdown took too long: exiting");
      process.exit(1);
    }, timeoutMs).unref();
    handle.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return handle;
}
