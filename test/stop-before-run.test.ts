/**
 * A task stopped before its RUN reached its worker: the manager sends the STOP in the RUN's
 * place, the worker holds nothing of the task and says so in its ack (not_held), and the
 * task ends COMPLETED "stopped" at once. A real manager and a real worker (hollow driver)
 * over real sockets.
 */
import { createClient } from "@connectrpc/connect";
import test from "ava";
import { createHollowDriver } from "../bench/hollow-driver.js";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { WorkerService } from "../gen/cube/v1/worker_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { startWorker } from "../worker/index.js";
import { startTestManager, TEST_SANDBOXES, tempDir } from "./fixtures.js";
import { eventually, spec } from "./manager-harness.js";

test("a task stopped before its RUN was sent ends COMPLETED stopped, its worker never having had it", async (t) => {
  // One assignment in flight per worker: while the first task's pull hangs, the second's RUN
  // waits in the manager, and the stop replaces it there.
  const m = await startTestManager(t, { auth: false, assignmentWindow: 1 });
  const hollow = createHollowDriver();
  let release = () => {};
  const pulled = new Promise<void>((r) => {
    release = r;
  });
  const worker = await startWorker({
    ...TEST_SANDBOXES,
    manager: m.address,
    listen: "127.0.0.1:0",
    dataDir: await tempDir(t),
    driver: {
      ...hollow,
      async pull(image, onProgress) {
        if (image.startsWith("slow/")) await pulled;
        return hollow.pull(image, onProgress);
      },
    },
    logger: createLogger("worker", process.env.CUBE_LOG_LEVEL ?? "silent"),
  });
  t.teardown(() => worker.close());
  const tasks = createClient(TaskService, grpcTransport(m.address));
  const workers = createClient(WorkerService, grpcTransport(m.address));
  await eventually(async () => {
    const { workers: list } = await workers.listWorkers({});
    if (list[0]?.status !== WorkerStatus.READY) throw new Error("no worker yet");
  });
  const { task: slow } = await tasks.runTask({ spec: spec({ name: "slow", image: "slow/app:1" }) });
  const { task: never } = await tasks.runTask({ spec: spec({ name: "never", image: "app:1" }) });
  t.is(never?.state, TaskState.SCHEDULED);
  await tasks.stopTask({ id: never?.id ?? "" });
  release();
  await eventually(async () => {
    const { task } = await tasks.getTask({ id: never?.id ?? "" });
    if (task?.state !== TaskState.COMPLETED) throw new Error(`${TaskState[task?.state ?? 0]}`);
    t.is(task.reason, "stopped");
  });
  // The slow one was not held back by it, and runs.
  await eventually(async () => {
    const { task } = await tasks.getTask({ id: slow?.id ?? "" });
    if (task?.state !== TaskState.RUNNING) throw new Error(`${TaskState[task?.state ?? 0]}`);
  });
});
