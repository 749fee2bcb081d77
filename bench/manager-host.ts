/**
 * A manager process for the throughput scenario's in-process BASELINE (not what a user
 * gets: no client, no gRPC on the submitting side): the manager's own parts composed as
 * manager/index.ts startManager composes them (LevelStore, control plane,
 * TaskService/WorkerService/MetricsService routes on an h2c server), plus a way to submit
 * tasks from inside the process — through the very function the RunTasks handler calls
 * (manager/rules/run-tasks.ts) — so placements are measured without the transport. Workers
 * still talk to it over real gRPC streams. Also the host of profiled runs (it can profile
 * just the measured window) and of the restart scenario's fill.
 *
 * Environment: CUBE_DATA_DIR (required), CUBE_LISTEN (default 127.0.0.1:0), CUBE_LOG_LEVEL
 * (default info, as the product's), and CUBE_HEARTBEAT_INTERVAL, CUBE_HEARTBEAT_TIMEOUT,
 * CUBE_DOWN_GRACE in ms (as manager/main.ts).
 * Prints {"listening": "host:port"}. Then reads JSON lines on stdin:
 *   {"submit": {"prefix": "x-", "count": N, "batch": B, "concurrency": C, "spec": {...}, "file": PATH}}
 * runs them — B tasks per runTasks call (the RunTasks handler's function), C calls in
 * flight — writes the submit times (Date.now(), float64, little-endian) to PATH and prints
 * {"submitted": N, "placed": tasks with a worker in their answer, "ms": wall,
 * "answeredAt": Date.now() when the last call resolved (its tasks durable)}.
 *   {"profile": "start"} starts the V8 CPU profiler; {"profile": "stop", "file": PATH} writes
 *   the profile since the start to PATH (a .cpuprofile) and prints {"profiled": PATH}, so a
 *   profile covers just the measured window.
 *   {"loop": "reset"} restarts the event-loop delay histogram; {"loop": "read"} prints
 *   {"loop": {"p50": ms, "p99": ms, "max": ms}} since the reset.
 * SIGTERM closes it gracefully.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { TaskSpecSchema } from "../gen/cube/v1/task_pb.js";
import { RunTaskRequestSchema } from "../gen/cube/v1/task_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { startServer } from "../lib/rpc/server.js";
import { MANAGER_FILES, managerRoutes } from "../manager/api/routes.js";
import { openControlPlane } from "../manager/index.js";
import { runTasks } from "../manager/rules/run-tasks.js";
import { LevelStore } from "../manager/store/level-store.js";
import { runPool } from "./pool.js";
import { windowProfiler } from "./window-profiler.js";

const dataDir = process.env.CUBE_DATA_DIR;
if (!dataDir) {
  process.stderr.write("manager-host: CUBE_DATA_DIR is required\n");
  process.exit(2);
}
const logger = createLogger("manager");
await mkdir(dataDir, { recursive: true });
const store = await LevelStore.open(dataDir);
/** A duration option in milliseconds from the environment, as manager/main.ts reads them. */
const ms = (name: string): number | undefined => {
  const value = process.env[name];
  return value ? Number(value) : undefined;
};
const timing = {
  heartbeatIntervalMs: ms("CUBE_HEARTBEAT_INTERVAL"),
  heartbeatTimeoutMs: ms("CUBE_HEARTBEAT_TIMEOUT"),
  downGraceMs: ms("CUBE_DOWN_GRACE"),
};
const cp = await openControlPlane(store, {
  logger,
  ...Object.fromEntries(Object.entries(timing).filter(([, v]) => v !== undefined)),
});
const server = await startServer({
  listen: process.env.CUBE_LISTEN || "127.0.0.1:0",
  routes: managerRoutes(cp),
  files: MANAGER_FILES,
});

let closing = false;
const close = async () => {
  if (closing) return;
  closing = true;
  await server.close();
  await cp.close();
  await store.close();
  process.exit(0);
};
process.on("SIGTERM", () => void close());
process.on("SIGINT", () => void close());

// How late the event loop runs: a stalled manager is what makes workers give up on it.
const delay = monitorEventLoopDelay({ resolution: 10 });
delay.enable();

const profileCommand = windowProfiler();

interface Submit {
  prefix: string;
  count: number;
  batch: number;
  concurrency: number;
  spec: JsonValue;
  file: string;
}

process.stdout.write(`${JSON.stringify({ listening: server.address })}\n`);

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const { submit, profile, file, loop } = JSON.parse(line) as {
    submit?: Submit;
    profile?: "start" | "stop";
    file?: string;
    loop?: "reset" | "read";
  };
  if (loop === "reset") {
    delay.reset();
    process.stdout.write(`${JSON.stringify({ loop: "reset" })}\n`);
    continue;
  }
  if (loop === "read") {
    const ms = (ns: number) => Math.round(ns / 1e4) / 100;
    process.stdout.write(
      `${JSON.stringify({ loop: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) } })}\n`,
    );
    continue;
  }
  if (await profileCommand({ profile, file })) continue;
  if (!submit) continue;
  const spec = fromJson(TaskSpecSchema, submit.spec);
  const times = new Float64Array(submit.count);
  const t0 = Date.now();
  const batch = Math.max(1, Math.floor(submit.batch) || 1);
  let placed = 0;
  let answeredAt = 0;
  await runPool(Math.ceil(submit.count / batch), submit.concurrency, async (b) => {
    const first = b * batch;
    const n = Math.min(batch, submit.count - first);
    times.fill(Date.now(), first, first + n);
    const tasks = await runTasks(
      cp,
      Array.from({ length: n }, (_, k) =>
        create(RunTaskRequestSchema, { id: `${submit.prefix}${first + k}`, spec }),
      ),
      "", // in process: no token
    );
    answeredAt = Math.max(answeredAt, Date.now());
    for (const task of tasks) if (task.workerId) placed++;
  });
  await writeFile(submit.file, new Uint8Array(times.buffer));
  process.stdout.write(
    `${JSON.stringify({ submitted: submit.count, placed, ms: Date.now() - t0, answeredAt })}\n`,
  );
}
