/**
 * A manager process for the metrics-scrape scenario: a control plane over a MemoryStore,
 * filled with BENCH_TASKS tasks (default 100,000) through the function the RunTasks handler
 * calls (5,000 a call), served as startManager serves it — the manager's routes on one port,
 * GET /metrics through the plain-HTTP fallback, the RPC metrics interceptor. A hundred
 * workers are in its table, READY, with room for 80 % of the tasks (SCHEDULED, their
 * assignments waiting, as no stream is open); the rest stay PENDING. What a scrape costs is
 * then what it costs on a full manager: the process metrics, the registries, and the counts
 * kept as tasks change (never a walk of the task table).
 *
 * Environment: BENCH_TASKS, CUBE_LISTEN (default 127.0.0.1:0). Prints
 * {"listening": "host:port", "tasks": N, "fillMs": ms}; SIGTERM ends it.
 */
import { create } from "@bufbuild/protobuf";
import { TaskSpecSchema } from "../gen/cube/v1/task_pb.js";
import { RunTaskRequestSchema } from "../gen/cube/v1/task_service_pb.js";
import { WorkerSchema, WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { createLogger } from "../lib/logger.js";
import { startServer } from "../lib/rpc/server.js";
import { managerMetrics } from "../manager/api/metrics-http.js";
import { MANAGER_FILES, managerRoutes } from "../manager/api/routes.js";
import { WorkerEntry } from "../manager/core/worker-table.js";
import { openControlPlane } from "../manager/index.js";
import { runTasks } from "../manager/rules/run-tasks.js";
import { MemoryStore } from "../manager/store/memory-store.js";

const WORKERS = 100;
const BATCH = 5000;
const tasks = Number(process.env.BENCH_TASKS ?? 100_000);
const logger = createLogger("manager", process.env.CUBE_LOG_LEVEL ?? "warn");
const cp = await openControlPlane(new MemoryStore(), { logger });
// 0.01 cpu a task: each worker takes 800, so 100 take 80,000.
for (let i = 0; i < WORKERS; i++) {
  const id = `w${i}`;
  cp.workers.add(
    new WorkerEntry(
      create(WorkerSchema, { id, name: id, capacity: { cpu: 8 } }),
      0n,
      WorkerStatus.READY,
    ),
  );
}
const spec = create(TaskSpecSchema, {
  name: "scrape",
  image: "cube/httpd:local",
  resources: { cpu: 0.01 },
});
const t0 = performance.now();
for (let first = 0; first < tasks; first += BATCH) {
  const n = Math.min(BATCH, tasks - first);
  await runTasks(
    cp,
    Array.from({ length: n }, (_, k) =>
      create(RunTaskRequestSchema, { id: `scrape-${first + k}`, spec }),
    ),
    "", // in process: no token
  );
}
const fillMs = Math.round(performance.now() - t0);
const server = await startServer({
  listen: process.env.CUBE_LISTEN || "127.0.0.1:0",
  routes: managerRoutes(cp),
  files: MANAGER_FILES,
  ...managerMetrics(cp),
});
const close = async () => {
  await server.close();
  await cp.close();
  process.exit(0);
};
process.on("SIGTERM", () => void close());
process.on("SIGINT", () => void close());
process.stdout.write(`${JSON.stringify({ listening: server.address, tasks, fillMs })}\n`);
