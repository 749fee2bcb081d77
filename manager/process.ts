import { createLogger } from "../lib/logger.js";
import { type ManagerHandle, type ManagerOptions, startManager } from "./index.js";

/**
 * Runs a manager as the process's main work: starts it, and on SIGINT or SIGTERM closes it
 * gracefully (within its shutdown deadline) and exits 0; a second signal exits at once (130).
 * Resolves with the handle once it serves.
 */
export async function runManagerProcess(options: ManagerOptions): Promise<ManagerHandle> {
  const logger = options.logger ?? createLogger("manager");
  const handle = await startManager({ ...options, logger });
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(130);
    }
    stopping = true;
    logger.info({ signal }, "stopping");
    handle.close().then(
      () => process.exit(0),
      (error) => {
        logger.error({ err: error }, "close failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return handle;
}
