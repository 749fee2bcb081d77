import test from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { TASK_GC_INTERVAL_MS } from "../manager/rules/task-gc.js";
import { dockerWorker } from "./docker-worker.js";
import { FakeClock } from "./fake-clock.js";
import { docker, HTTP_IMAGE, requireDocker, startTestManager } from "./fixtures.js";
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
  const { tasks, workers } = await dockerWorker(t, m.address);
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
