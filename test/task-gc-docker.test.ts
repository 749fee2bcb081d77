/**
 * Task garbage collection removes the container of an ended task on its worker at once: a
 * real manager (fake clock, so the sweep runs when the test says) and a real worker on the
 * shared Docker engine, over real sockets, with no reconnect in between.
 */
import { createClient } from "@connectrpc/connect";
import test from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { WorkerService } from "../gen/cube/v1/worker_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { TASK_GC_INTERVAL_MS } from "../manager/rules/task-gc.js";
import { startWorker } from "../worker/index.js";
import { FakeClock } from "./fake-clock.js";
import {
  docker,
  HTTP_IMAGE,
  removeContainers,
  requireDocker,
  startTestManager,
  tempDir,
} from "./fixtures.js";
import { eventually } from "./manager-harness.js";

const HOUR = 3_600_000;

test("garbage collection of an ended task removes its container from the worker, without a reconnect", async (t) => {
  await requireDocker();
  const clock = new FakeClock();
  // The worker stays in contact across the clock's jump.
  const m = await startTestManager(t, {
    auth: false,
    clock,
    taskGcAfterMs: 10_000,
    heartbeatTimeoutMs: 10 * HOUR,
  });
  const worker = await startWorker({
    manager: m.address,
    listen: "127.0.0.1:0",
    dataDir: await tempDir(t),
    logger: createLogger("worker", process.env.CUBE_LOG_LEVEL ?? "silent"),
  });
  t.teardown(async () => {
    await worker.close();
    await removeContainers(`cube.worker=${worker.id}`);
  });
  const tasks = createClient(TaskService, grpcTransport(m.address));
  const workers = createClient(WorkerService, grpcTransport(m.address));
  await eventually(async () => {
    const { workers: list } = await workers.listWorkers({});
    if (list[0]?.status !== WorkerStatus.READY) throw new Error("no worker yet");
  }, 20_000);
  const { task } = await tasks.runTask({
    spec: { name: "gc-me", image: HTTP_IMAGE, command: ["sh", "-c", "echo bye"] },
  });
  const id = task?.id ?? "";
  const ofTask = () =>
    docker.listContainers({ all: true, filters: { label: [`cube.task=${id}`] } });
  await eventually(async () => {
    const { task } = await tasks.getTask({ id });
    if (task?.state !== TaskState.COMPLETED) throw new Error(`${TaskState[task?.state ?? 0]}`);
  }, 30_000);
  t.is((await ofTask()).length, 1, "the ended container is kept (cube logs reads it)");
  // Every status the worker shows from now on: it must stay READY (no reconnect).
  const seen = new Set<WorkerStatus>();
  const watching = new AbortController();
  const watch = (async () => {
    for await (const { worker } of workers.watchWorkers({}, { signal: watching.signal })) {
      if (worker) seen.add(worker.status);
    }
  })().catch(() => undefined);
  clock.advance(HOUR + TASK_GC_INTERVAL_MS);
  await eventually(async () => {
    const left = await ofTask();
    if (left.length > 0)
      throw new Error(`${left.length} containers still there: ${left[0]?.State}`);
  }, 20_000);
  watching.abort();
  await watch;
  t.deepEqual([...seen], [WorkerStatus.READY], "no reconnect in between");
});
