import { createLogger } from "../lib/logger.js";
import { stopOnSignals } from "../lib/stop-on-signals.js";
import { type ManagerHandle, type ManagerOptions, startManager } from "./index.js";

/**
 * Runs a manager as the process's main work: starts it, and on SIGINT or SIGTERM closes it
 * gracefully (within its shutdown deadline) and exits 0; a second signal exits at once (130).
 * Resolves with the handle once it serves.
 */
export async function runManagerProcess(options: ManagerOptions): Promise<ManagerHandle> {
  const logger = options.logger ?? createLogger("manager");
  const handle = await startManager({ ...options, logger });
  stopOnSignals({
    onStop: (signal) => logger.info({ signal }, "stopping"),
    close: () => handle.close(),
    onError: (error) => logger.error({ err: error }, "close failed"),
  });
  return handle;
}
