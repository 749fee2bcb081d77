import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import {
  HealthStatus,
  RestartMode,
  type Task,
  TaskEventType,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import { WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { AssignmentAction } from "../gen/cube/v1/worker_service_pb.js";
import { RESTART_RESET_MS } from "../manager/rules/restart-policy.js";
import { FakeClock } from "./fake-clock.js";
import { eventually, FakeWorker, type Harness, harness, spec } from "./manager-harness.js";

async function state(h: Harness, id: string, want: TaskState, ms = 3000): Promise<Task> {
  return eventually(async () => {
    const { task } = await h.tasks.getTask({ id });
    if (task?.state !== want) {
      throw new Error(
        `${id}: ${TaskState[task?.state ?? 0]} (${task?.reason}), want ${TaskState[want]}`,
      );
    }
    return task;
  }, ms);
}

/** Resolves once a restart of the task waits out its back-off (its timer is set). */
async function restartWaiting(h: Harness, id: string): Promise<void> {
  await eventually(() => {
    if (!h.cp.tasks.get(id)?.restartTimer) throw new Error(`${id}: no restart waiting`);
  });
}

/** Resolves once `w` got the RUN of the task's generation `gen` and the task is RUNNING at it. */
async function runningAt(h: Harness, w: FakeWorker, id: string, gen: bigint): Promise<void> {
  await w.waitFor(
    (a) => a.task?.id === id && a.task.generation === gen && a.action === AssignmentAction.RUN,
  );
  await eventually(async () => {
    const { task } = await h.tasks.getTask({ id });
    if (task?.generation !== gen || task.state !== TaskState.RUNNING) throw new Error("not yet");
  });
}

/**
 * A manager on a fake clock with one fake worker, running a task with restart `mode`,
 * `maxRestarts` and a back-off of `backoffMs`. The worker's heartbeat timeout is an hour, so
 * it stays in contact across the clock's jumps.
 */
async function failingTask(
  t: ExecutionContext,
  mode: RestartMode,
  maxRestarts: number,
  backoffMs = 20,
): Promise<{ clock: FakeClock; h: Harness; w: FakeWorker; id: string }> {
  const clock = new FakeClock();
  const h = await harness(t, { clock, heartbeatTimeoutMs: 3_600_000 });
  const w = new FakeWorker("w1");
  await w.connect(h.transport);
  const { task } = await h.tasks.runTask({
    spec: spec({ restartPolicy: { mode, maxRestarts, backoff: durationFromMs(backoffMs) } }),
  });
  return { clock, h, w, id: task?.id ?? "" };
}

/** The messages of the task's PROGRESS events, in order. */
async function progressOf(h: Harness, id: string): Promise<string[]> {
  const { events } = await h.tasks.listTaskEvents({ taskId: id });
  return events.filter((e) => e.type === TaskEventType.PROGRESS).map((e) => e.message);
}

async function status(h: Harness, id: string, want: WorkerStatus, ms = 3000): Promise<void> {
  await eventually(async () => {
    const { worker } = await h.workers.getWorker({ id });
    if (worker?.status !== want) throw new Error(`${id}: ${WorkerStatus[worker?.status ?? 0]}`);
  }, ms);
}

test("a worker registers, gets tasks pushed at once, and its allocation follows them", async (t) => {
  const h = await harness(t, { heartbeatIntervalMs: 300 });
  const w = new FakeWorker("w1", { capacity: { cpu: 2, memoryBytes: 1n << 30n } });
  const registered = await w.connect(h.transport);
  t.is(registered.workerId, "w1");
  t.is(durationMs(registered.heartbeatInterval ?? durationFromMs(0)), 300);
  t.is(registered.lastUpdateSeq, 0n);
  const { task } = await h.tasks.runTask({
    spec: spec({ resources: { cpu: 0.5, memoryBytes: 100n << 20n } }),
  });
  t.is(task?.state, TaskState.SCHEDULED);
  t.is(task?.workerId, "w1");
  t.is(task?.generation, 1n);
  const run = await w.waitFor((a) => a.task?.id === task?.id);
  t.is(run.action, AssignmentAction.RUN);
  await state(h, task?.id ?? "", TaskState.RUNNING);
  const { worker } = await h.workers.getWorker({ id: "w1" });
  t.is(worker?.status, WorkerStatus.READY);
  t.is(worker?.taskCount, 1);
  t.is(worker?.allocated?.cpu, 0.5);
  t.is(worker?.allocated?.memoryBytes, 100n << 20n);
  t.truthy(worker?.lastHeartbeat);
  t.is((await h.workers.listWorkers({})).workers.length, 1);
  const unknown = await h.workers.getWorker({ id: "nope" }).catch((e) => ConnectError.from(e));
  t.is((unknown as ConnectError).code, Code.NotFound);
});

test("updates are acknowledged cumulatively, replays are ignored, and the seq survives a restart", async (t) => {
  let h = await harness(t);
  const w = new FakeWorker("w1", { auto: false });
  await w.connect(h.transport);
  const { task } = await h.tasks.runTask({ spec: spec() });
  const id = task?.id ?? "";
  w.update(id, 1n, TaskState.RUNNING);
  await eventually(() => {
    if (w.acks.at(-1) !== 1n) throw new Error(`acks ${w.acks}`);
  });
  await state(h, id, TaskState.RUNNING);
  w.send({
    case: "update",
    value: { seq: 1n, taskId: id, generation: 1n, state: TaskState.FAILED },
  });
  w.update(id, 1n, TaskState.COMPLETED, { exitCode: 0, reason: "exit code 0" });
  const done = await state(h, id, TaskState.COMPLETED);
  t.is(done.exitCode, 0);
  t.truthy(done.finishedAt);
  await eventually(() => {
    if (w.acks.at(-1) !== 2n) throw new Error(`acks ${w.acks}`);
  });
  h = await h.restart();
  const again = new FakeWorker("w1", { auto: false });
  const registered = await again.connect(h.transport);
  t.is(registered.lastUpdateSeq, 2n);
});

test("an update of another generation is ignored", async (t) => {
  const h = await harness(t);
  const w = new FakeWorker("w1", { auto: false });
  await w.connect(h.transport);
  const { task } = await h.tasks.runTask({ spec: spec() });
  const id = task?.id ?? "";
  w.update(id, 7n, TaskState.RUNNING);
  w.update(id, 1n, TaskState.RUNNING, { containerId: "real" });
  const running = await state(h, id, TaskState.RUNNING);
  t.is(running.containerId, "real");
  const { events } = await h.tasks.listTaskEvents({ taskId: id });
  t.is(events.filter((e) => e.task?.state === TaskState.RUNNING).length, 1);
});

test("a task that fits nowhere is PENDING with a reason, and placed when capacity appears, FIFO", async (t) => {
  const h = await harness(t);
  const w = new FakeWorker("w1", { capacity: { cpu: 1, memoryBytes: 1n << 30n } });
  await w.connect(h.transport);
  const big = { resources: { cpu: 0.6 } };
  const a = (await h.tasks.runTask({ id: "a", spec: spec(big) })).task;
  const b = (await h.tasks.runTask({ id: "b", spec: spec(big) })).task;
  const c = (await h.tasks.runTask({ id: "c", spec: spec(big) })).task;
  t.is(a?.state, TaskState.SCHEDULED);
  t.is(b?.state, TaskState.PENDING);
  t.is(b?.reason, "0/1 workers fit: 1 lacks 0.6 cpu cores");
  t.is(c?.state, TaskState.PENDING);
  await state(h, "a", TaskState.RUNNING);
  await h.tasks.stopTask({ id: "a" });
  await state(h, "b", TaskState.RUNNING);
  t.is((await h.tasks.getTask({ id: "c" })).task?.state, TaskState.PENDING, "FIFO: b first");
  // A second worker brings room for c.
  const w2 = new FakeWorker("w2", { capacity: { cpu: 1, memoryBytes: 1n << 30n } });
  await w2.connect(h.transport);
  const placed = await state(h, "c", TaskState.RUNNING);
  t.is(placed.workerId, "w2");
});

test("a failed task is restarted with back-off on the same worker, then gives up", async (t) => {
  const { clock, h, w, id } = await failingTask(t, RestartMode.ON_FAILURE, 2);
  // The back-off before the restart each failure leads to (none after the last).
  for (const [gen, backoff] of [
    [1n, 20],
    [2n, 40],
    [3n, 0],
  ] as const) {
    await runningAt(h, w, id, gen);
    w.update(id, gen, TaskState.FAILED, { exitCode: 1, reason: "exit code 1" });
    if (backoff > 0) {
      await restartWaiting(h, id);
      clock.advance(backoff);
    }
  }
  const failed = await state(h, id, TaskState.FAILED);
  t.is(failed.reason, "exit code 1 (gave up after 2 restarts)");
  t.is(failed.restartCount, 2);
  t.is(failed.workerId, "w1");
  t.deepEqual(await progressOf(h, id), ["restarting in 20ms (1/2)", "restarting in 40ms (2/2)"]);
});

test("the restart count and back-off start afresh once the task ran ready for 10 minutes", async (t) => {
  const { clock, h, w, id } = await failingTask(t, RestartMode.ON_FAILURE, 2);
  // Two quick failures use up the budget of 2 ...
  for (const [gen, backoff] of [
    [1n, 20],
    [2n, 40],
  ] as const) {
    await runningAt(h, w, id, gen);
    w.update(id, gen, TaskState.FAILED, { exitCode: 1, reason: "exit code 1" });
    await restartWaiting(h, id);
    clock.advance(backoff);
  }
  // ... then the third copy runs 10 minutes: its failure is restart 1/2 again, at 20 ms.
  await runningAt(h, w, id, 3n);
  clock.advance(RESTART_RESET_MS);
  w.update(id, 3n, TaskState.FAILED, { exitCode: 1, reason: "exit code 1" });
  await restartWaiting(h, id);
  t.is((await h.tasks.getTask({ id })).task?.restartCount, 0, "the reset count is stored");
  clock.advance(20);
  await runningAt(h, w, id, 4n);
  t.is((await h.tasks.getTask({ id })).task?.restartCount, 1);
  // A failure soon after counts again: 2/2, then gives up.
  w.update(id, 4n, TaskState.FAILED, { exitCode: 1, reason: "exit code 1" });
  await restartWaiting(h, id);
  clock.advance(40);
  await runningAt(h, w, id, 5n);
  w.update(id, 5n, TaskState.FAILED, { exitCode: 1, reason: "exit code 1" });
  const failed = await state(h, id, TaskState.FAILED);
  t.is(failed.reason, "exit code 1 (gave up after 2 restarts)");
  t.deepEqual(await progressOf(h, id), [
    "restarting in 20ms (1/2)",
    "restarting in 40ms (2/2)",
    "restarting in 20ms (1/2)",
    "restarting in 40ms (2/2)",
  ]);
});

test("restart always without max_restarts never gives up", async (t) => {
  const { clock, h, w, id } = await failingTask(t, RestartMode.ALWAYS, 0, 10);
  for (let gen = 1n; gen <= 6n; gen++) {
    await runningAt(h, w, id, gen);
    w.update(id, gen, TaskState.FAILED, { exitCode: 1, reason: "exit code 1" });
    await restartWaiting(h, id);
    clock.advance(10 * 2 ** Number(gen - 1n));
  }
  t.deepEqual(await progressOf(h, id), [
    "restarting in 10ms (1)",
    "restarting in 20ms (2)",
    "restarting in 40ms (3)",
    "restarting in 80ms (4)",
    "restarting in 160ms (5)",
    "restarting in 320ms (6)",
  ]);
  await w.waitFor((a) => a.task?.id === id && a.task.generation === 7n);
});

test("an unhealthy task is restarted, and past its limit FAILED and stopped", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock });
  const w = new FakeWorker("w1");
  await w.connect(h.transport);
  const { task } = await h.tasks.runTask({
    spec: spec({
      ports: [{ containerPort: 80 }],
      healthCheck: { path: "/cgi-bin/health" },
      restartPolicy: { mode: RestartMode.ON_FAILURE, maxRestarts: 1, backoff: durationFromMs(10) },
    }),
  });
  const id = task?.id ?? "";
  const unhealthy = (generation: bigint) =>
    w.send({
      case: "health",
      value: {
        taskId: id,
        generation,
        status: HealthStatus.UNHEALTHY,
        message: "HTTP 500",
        consecutiveFailures: 3,
      },
    });
  await state(h, id, TaskState.RUNNING);
  unhealthy(1n);
  await restartWaiting(h, id);
  clock.advance(10);
  await w.waitFor((a) => a.task?.id === id && a.task.generation === 2n);
  await eventually(async () => {
    const { task } = await h.tasks.getTask({ id });
    if (task?.generation !== 2n || task.state !== TaskState.RUNNING) throw new Error("not yet");
    t.is(task.health, HealthStatus.UNSPECIFIED, "health starts over");
  });
  unhealthy(2n);
  const failed = await state(h, id, TaskState.FAILED);
  t.is(failed.reason, "health check failed: HTTP 500 (gave up after 1 restarts)");
  await w.waitFor((a) => a.task?.id === id && a.action === AssignmentAction.STOP);
});

test("a worker whose stream ends is DOWN after the grace; its tasks move and its stale copies are stopped", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock, downGraceMs: 200 });
  const w1 = new FakeWorker("w1");
  const w2 = new FakeWorker("w2");
  await w1.connect(h.transport);
  const { task } = await h.tasks.runTask({ spec: spec() });
  const id = task?.id ?? "";
  await state(h, id, TaskState.RUNNING);
  await w2.connect(h.transport);
  w1.disconnect();
  await status(h, "w1", WorkerStatus.DISCONNECTED);
  clock.advance(199);
  t.is((await h.tasks.getTask({ id })).task?.workerId, "w1", "tasks stay during the grace");
  clock.advance(1);
  await status(h, "w1", WorkerStatus.DOWN);
  const moved = await state(h, id, TaskState.RUNNING);
  t.is(moved.workerId, "w2");
  t.is(moved.generation, 2n);
  t.is(moved.restartCount, 0, "a move off a lost worker is not a restart");
  // w1 comes back still holding generation 1: the reconcile stops it.
  const back = new FakeWorker("w1");
  await back.connect(h.transport, [
    { taskId: id, generation: 1n, state: TaskState.RUNNING, containerId: "old" },
    { taskId: "ghost", generation: 3n, state: TaskState.RUNNING, containerId: "ghost" },
  ]);
  await back.waitFor(
    (a) => a.task?.id === id && a.action === AssignmentAction.STOP && a.task.generation === 1n,
  );
  await back.waitFor((a) => a.task?.id === "ghost" && a.action === AssignmentAction.STOP);
  await status(h, "w1", WorkerStatus.READY);
  t.is((await h.tasks.getTask({ id })).task?.workerId, "w2");
});

test("a worker that reconnects within the grace keeps its tasks; missing ones are sent again", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock, downGraceMs: 2000 });
  const w = new FakeWorker("w1");
  await w.connect(h.transport);
  const a = (await h.tasks.runTask({ id: "a", spec: spec() })).task;
  const b = (await h.tasks.runTask({ id: "b", spec: spec() })).task;
  await state(h, "a", TaskState.RUNNING);
  await state(h, "b", TaskState.RUNNING);
  w.disconnect();
  await status(h, "w1", WorkerStatus.DISCONNECTED);
  clock.advance(1999); // the last moment of the grace
  const again = new FakeWorker("w1", { seq: 2n });
  await again.connect(h.transport, [
    { taskId: "a", generation: a?.generation ?? 0n, state: TaskState.RUNNING },
  ]);
  const resent = await again.waitFor((x) => x.task?.id === "b");
  t.is(resent.action, AssignmentAction.RUN);
  t.is(resent.task?.generation, b?.generation);
  t.false(
    again.assignments.some((x) => x.task?.id === "a"),
    "a is where it should be",
  );
  await status(h, "w1", WorkerStatus.READY);
});

test("a worker silent past the heartbeat timeout is DISCONNECTED, its stream closed", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, {
    clock,
    heartbeatIntervalMs: 50,
    heartbeatTimeoutMs: 200,
    downGraceMs: 5000,
  });
  const w = new FakeWorker("w1");
  await w.connect(h.transport);
  const started = clock.now();
  // One heartbeat interval at a time, as the manager checks; bounded, in case it never is.
  for (let i = 0; i < 40 && h.cp.workers.get("w1")?.status === WorkerStatus.READY; i++) {
    clock.advance(50);
  }
  await status(h, "w1", WorkerStatus.DISCONNECTED);
  const took = clock.now() - started;
  t.true(took < 2000, `DISCONNECTED after ${took} ms`);
  t.is(took, 250, "at the first check past the 200 ms timeout");
  await eventually(() => {
    if (!w.ended) throw new Error("stream still open");
  });
});

test("a stopped task on a DISCONNECTED worker that goes DOWN is COMPLETED", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock, downGraceMs: 100 });
  const w = new FakeWorker("w1", { auto: false });
  await w.connect(h.transport);
  const { task } = await h.tasks.runTask({ spec: spec() });
  const id = task?.id ?? "";
  w.update(id, 1n, TaskState.RUNNING);
  await state(h, id, TaskState.RUNNING);
  w.disconnect();
  await status(h, "w1", WorkerStatus.DISCONNECTED);
  await h.tasks.stopTask({ id });
  t.is((await h.tasks.getTask({ id })).task?.state, TaskState.UNKNOWN, "until the worker is DOWN");
  clock.advance(100);
  const done = await state(h, id, TaskState.COMPLETED);
  t.is(done.reason, "stopped");
});

test("after a manager restart workers get the grace to come back, then their tasks move", async (t) => {
  const clock = new FakeClock();
  let h = await harness(t, { clock, downGraceMs: 300, startupGraceMs: 300 });
  const w1 = new FakeWorker("w1");
  const w2 = new FakeWorker("w2");
  await w1.connect(h.transport);
  await h.tasks.runTask({ id: "on1", spec: spec() });
  await w2.connect(h.transport);
  await state(h, "on1", TaskState.RUNNING);
  const revision = h.cp.revision;
  w1.disconnect();
  w2.disconnect();
  h = await h.restart();
  t.is(h.cp.revision, revision);
  const { workers } = await h.workers.listWorkers({});
  t.deepEqual(
    workers.map((w) => WorkerStatus[w.status]),
    ["DISCONNECTED", "DISCONNECTED"],
  );
  t.is(workers.find((w) => w.id === "w1")?.taskCount, 1);
  const w2b = new FakeWorker("w2");
  await w2b.connect(h.transport);
  clock.advance(300);
  const moved = await eventually(async () => {
    const { task } = await h.tasks.getTask({ id: "on1" });
    if (task?.workerId !== "w2" || task.state !== TaskState.RUNNING) throw new Error("not moved");
    return task;
  });
  t.is(moved.generation, 2n);
  await status(h, "w1", WorkerStatus.DOWN);
  await h.tasks.runTask({ id: "next", spec: spec() });
  const next = await h.tasks.getTask({ id: "next" });
  t.true((next.task?.revision ?? 0n) > revision, "revisions continue");
});

test("metrics streamed up are served by MetricsService", async (t) => {
  const h = await harness(t);
  const w = new FakeWorker("w1");
  await w.connect(h.transport);
  const { task } = await h.tasks.runTask({ spec: spec() });
  const id = task?.id ?? "";
  const ac = new AbortController();
  const watched = (async () => {
    for await (const m of h.metrics.watchMetrics({}, { signal: ac.signal })) return m;
    return undefined;
  })();
  await eventually(() => {
    w.send({
      case: "stats",
      value: {
        node: { cpuCount: 2, cpuPercent: 12.5, memoryTotalBytes: 100n, memoryUsedBytes: 40n },
        tasks: [{ taskId: id, workerId: "w1", cpuPercent: 3, memoryUsedBytes: 10n }],
      },
    });
    if (!h.cp.workers.get("w1")?.metrics) throw new Error("no metrics yet");
  });
  const node = await h.metrics.getNodeMetrics({ workerId: "w1" });
  t.is(node.metrics?.cpuPercent, 12.5);
  t.is(node.metrics?.workerId, "w1");
  t.is((await h.metrics.listNodeMetrics({})).metrics.length, 1);
  t.is((await h.metrics.listTaskMetrics({ taskId: id })).metrics[0]?.memoryUsedBytes, 10n);
  t.is((await h.metrics.listTaskMetrics({ workerId: "w2" })).metrics.length, 0);
  const unknown = await h.metrics
    .getNodeMetrics({ workerId: "zz" })
    .catch((e) => ConnectError.from(e));
  t.is((unknown as ConnectError).code, Code.NotFound);
  const none = await h.metrics.getNodeMetrics({ workerId: "" }).catch((e) => ConnectError.from(e));
  t.is((none as ConnectError).code, Code.InvalidArgument);
  t.is((none as ConnectError).rawMessage, "worker_id: required");
  w.send({ case: "stats", value: { node: { cpuPercent: 50 }, tasks: [] } });
  const first = await watched;
  ac.abort();
  t.is(first?.node?.workerId, "w1");
  const { worker } = await h.workers.getWorker({ id: "w1" });
  t.truthy(worker?.metrics);
});

test("a stream that does not register first is refused", async (t) => {
  const h = await harness(t);
  const w = new FakeWorker("bad id with spaces");
  const error = await w.connect(h.transport).catch((e) => e);
  t.truthy(error);
  await eventually(() => {
    if (!w.ended) throw new Error("not ended");
  });
  t.is(ConnectError.from(w.ended?.error).code, Code.InvalidArgument);
});

test("WatchWorkers sends every worker, then each again as it changes", async (t) => {
  const h = await harness(t);
  await new FakeWorker("w1").connect(h.transport);
  const ac = new AbortController();
  const seen: string[] = [];
  const watching = (async () => {
    for await (const { worker } of h.workers.watchWorkers({}, { signal: ac.signal })) {
      seen.push(`${worker?.id}:${WorkerStatus[worker?.status ?? 0]}:${worker?.taskCount}`);
      if (seen.includes("w2:READY:1")) return;
    }
  })();
  await eventually(() => {
    if (!seen.includes("w1:READY:0")) throw new Error(`seen ${seen}`);
  });
  await new FakeWorker("w2").connect(h.transport);
  await h.tasks.runTask({ spec: spec() });
  await h.tasks.runTask({ spec: spec() });
  await watching;
  ac.abort();
  t.is(seen[0], "w1:READY:0");
  t.true(seen.includes("w2:READY:0"));
});

test("a task stopped while its worker is away is COMPLETED when the worker comes back without it", async (t) => {
  // A fake clock that never moves: the grace cannot run out however slow the machine.
  const h = await harness(t, { clock: new FakeClock(), downGraceMs: 5000 });
  const w = new FakeWorker("w1", { auto: false });
  await w.connect(h.transport);
  const { task } = await h.tasks.runTask({ spec: spec() });
  const id = task?.id ?? "";
  t.is(task?.state, TaskState.SCHEDULED);
  w.disconnect();
  await status(h, "w1", WorkerStatus.DISCONNECTED);
  await h.tasks.stopTask({ id });
  t.is((await h.tasks.getTask({ id })).task?.state, TaskState.UNKNOWN, "lost contact");
  await new FakeWorker("w1").connect(h.transport, []);
  const done = await state(h, id, TaskState.COMPLETED);
  t.is(done.reason, "stopped");
  t.is((await h.workers.getWorker({ id: "w1" })).worker?.taskCount, 0);
});

test("a worker that accepts batches gets bursts as batch frames; batches it sends apply in order", async (t) => {
  const h = await harness(t);
  const w = new FakeWorker("wb", { acceptsBatch: true, auto: false });
  await w.connect(h.transport);
  const { tasks } = await h.tasks.runTasks({
    requests: Array.from({ length: 20 }, (_, i) => ({ id: `b${i}`, spec: spec() })),
  });
  t.is(tasks.length, 20);
  await eventually(() => {
    if (w.assignments.length < 20) throw new Error(`${w.assignments.length}/20 assignments`);
  });
  t.true(w.batchFrames >= 1, `${w.batchFrames} batch frames`);
  t.true(w.frames < 20, `20 assignments came in ${w.frames} frames`);
  t.deepEqual(
    w.assignments.map((a) => a.task?.id),
    tasks.map((task) => task.id),
    "in placement order, with their tasks whole",
  );
  t.is(w.assignments[0]?.task?.spec?.image, spec().image);
  // RUNNING then COMPLETED of b0 in one frame: applied in that order.
  w.sendBatch([
    w.nextUpdate("b0", 1n, TaskState.RUNNING),
    w.nextUpdate("b0", 1n, TaskState.COMPLETED),
    w.nextUpdate("b1", 1n, TaskState.RUNNING),
  ]);
  await state(h, "b1", TaskState.RUNNING);
  const { events } = await h.tasks.listTaskEvents({ taskId: "b0" });
  const states = events
    .filter((e) => e.type === TaskEventType.STATE_CHANGED)
    .map((e) => TaskState[e.task?.state ?? 0]);
  t.deepEqual(states.slice(0, 3), ["SCHEDULED", "RUNNING", "COMPLETED"]);
  await eventually(() => {
    if (!w.acks.includes(3n)) throw new Error(`acks ${w.acks}`);
  });
});

test("a batch holding a register or a batch ends the stream with INVALID_ARGUMENT", async (t) => {
  const h = await harness(t);
  const w = new FakeWorker("wr");
  await w.connect(h.transport);
  w.sendBatch([{ case: "register", value: { workerId: "wr" } }]);
  await eventually(() => {
    if (!w.ended) throw new Error("stream still open");
  });
  const e = ConnectError.from(w.ended?.error);
  t.is(e.code, Code.InvalidArgument);
  t.regex(e.rawMessage, /batch may not hold a register/);
});

test("a worker gets at most assignment_window unacknowledged tasks; the rest follow its acks, in order", async (t) => {
  const h = await harness(t, { assignmentWindow: 3 });
  const w = new FakeWorker("ww", { ack: false, auto: false });
  await w.connect(h.transport);
  const { tasks } = await h.tasks.runTasks({
    requests: Array.from({ length: 8 }, (_, i) => ({ id: `w${i}`, spec: spec() })),
  });
  t.true(tasks.every((task) => task.state === TaskState.SCHEDULED && task.workerId === "ww"));
  await eventually(() => {
    if (w.assignments.length < 3) throw new Error(`${w.assignments.length} assignments`);
  });
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(
    w.assignments.map((a) => a.task?.id),
    ["w0", "w1", "w2"],
    "three in flight, the rest wait",
  );
  // A STOP of a waiting task replaces its RUN: it never gets the RUN.
  await h.tasks.stopTask({ id: "w4" });
  w.ackAll();
  await eventually(() => {
    if (w.assignments.length < 6) throw new Error(`${w.describe()}`);
  });
  t.deepEqual(
    w.assignments.slice(3, 6).map((a) => [a.task?.id, AssignmentAction[a.action]]),
    [
      ["w3", "RUN"],
      ["w4", "STOP"],
      ["w5", "RUN"],
    ],
  );
  w.ackAll();
  await eventually(() => {
    if (w.assignments.length < 8) throw new Error(`${w.describe()}`);
  });
  t.deepEqual(
    w.assignments.slice(6).map((a) => a.task?.id),
    ["w6", "w7"],
  );
});

test("an update whose seq jumps is refused and never stored; later real updates still apply", async (t) => {
  const h = await harness(t);
  const w = new FakeWorker("w1", { auto: false });
  await w.connect(h.transport);
  const { task } = await h.tasks.runTask({ spec: spec() });
  const id = task?.id ?? "";
  w.update(id, 1n, TaskState.RUNNING);
  await state(h, id, TaskState.RUNNING);
  // A forged update far ahead: were it stored, every later real one would look like a replay.
  w.send({
    case: "update",
    value: { seq: 2n ** 62n, taskId: id, generation: 1n, state: TaskState.FAILED },
  });
  await eventually(() => {
    if (!w.ended) throw new Error("stream still open");
  });
  t.is(ConnectError.from(w.ended?.error).code, Code.InvalidArgument);
  // Not applied (the stream's end may have made the task UNKNOWN since: lost contact).
  t.not((await h.tasks.getTask({ id })).task?.state, TaskState.FAILED, "not applied");
  // The real worker comes back and goes on from the seq the manager really has.
  const again = new FakeWorker("w1", { auto: false, seq: 1n });
  const registered = await again.connect(h.transport);
  t.is(registered.lastUpdateSeq, 1n, "the jump was never stored");
  again.update(id, 1n, TaskState.COMPLETED, { exitCode: 0, reason: "exit code 0" });
  await state(h, id, TaskState.COMPLETED);
});
