/**
 * `node --import=tsx worker/main.ts`: a worker configured by the environment alone (every
 * CUBE_* setting `cube worker` reads, read by the same {@link workerOptionsFromEnv}), for
 * tests and benchmarks that spawn a real worker process (and kill -9 it). `cube worker` runs
 * the same {@link runWorkerProcess} with flags over these.
 */
import { workerOptionsFromEnv } from "./env.js";
import { runWorkerProcess } from "./process.js";

try {
  const options = workerOptionsFromEnv(process.env);
  const handle = await runWorkerProcess(options);
  // One line on stdout for whoever spawned us: the bound address and the id.
  process.stdout.write(`${JSON.stringify({ id: handle.id, address: handle.address })}\n`);
} catch (error) {
  process.stderr.write(`cube worker: ${(error as Error).message}\n`);
  process.exit(1);
}
