/**
 * A child process holding many hollow workers: the real worker (startWorker — store,
 * outbox, stream client, task runner, its own gRPC server) with the hollow driver, so
 * each keeps a real gRPC stream to the manager but starts no container (the idea of
 * Kubernetes' kubemark). Configured by environment:
 *   BENCH_MANAGER   host:port of the manager
 *   BENCH_COUNT     how many workers
 *   BENCH_DIR       parent of their data directories (tmpfs, so their fsyncs are free)
 *   BENCH_HOST      this host's index, for worker names
 *   BENCH_PING_TIMEOUT  ms a ping to the manager may go unanswered (the manager's heartbeat timeout)
 *   BENCH_TOKEN     the manager's worker join token (none for a manager without auth)
 * Prints one JSON line once all are connected: {"ready": n, "ids": [...], "ms": start-up}.
 * SIGTERM or SIGINT: exits at once (the parent removes the data directories).
 * Reads profile commands on stdin (bench/window-profiler.ts) to profile the measured window.
 */
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createLogger } from "../lib/logger.js";
import { startWorker, type WorkerHandle } from "../worker/index.js";
import { createHollowDriver } from "./hollow-driver.js";
import { windowProfiler } from "./window-profiler.js";

const manager = process.env.BENCH_MANAGER ?? "";
const count = Number(process.env.BENCH_COUNT ?? "0");
const dir = process.env.BENCH_DIR ?? "";
const host = process.env.BENCH_HOST ?? "0";
if (!manager || !dir || !(count > 0)) {
  process.stderr.write("hollow-host: BENCH_MANAGER, BENCH_DIR and BENCH_COUNT > 0 are required\n");
  process.exit(2);
}
for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => process.exit(0));

// The product's log level (CUBE_LOG_LEVEL, default info) and metrics interval (the worker's
// default, 2 s): what a real worker would log and send up its stream.
const logger = createLogger("hollow");
const t0 = Date.now();
const handles: WorkerHandle[] = [];
// Started a few at a time: a thousand LevelDB opens and dials at once only queue up.
const BATCH = 25;
for (let i = 0; i < count; i += BATCH) {
  const batch = await Promise.all(
    Array.from({ length: Math.min(BATCH, count - i) }, (_, k) =>
      startWorker({
        manager,
        token: process.env.BENCH_TOKEN || undefined,
        listen: "127.0.0.1:0",
        name: `hollow-${host}-${i + k}`,
        dataDir: join(dir, `w${i + k}`),
        driver: createHollowDriver(),
        logger,
        pingTimeoutMs: Number(process.env.BENCH_PING_TIMEOUT) || undefined,
        capacity: { cpu: 64, memoryBytes: 64n << 30n, diskBytes: 1n << 40n },
      }),
    ),
  );
  handles.push(...batch);
}
process.stdout.write(
  `${JSON.stringify({ ready: handles.length, ids: handles.map((h) => h.id), ms: Date.now() - t0 })}\n`,
);

const profileCommand = windowProfiler();
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim()) await profileCommand(JSON.parse(line));
}
