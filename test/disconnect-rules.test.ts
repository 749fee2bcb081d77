/**
 * Disconnection is not death, through the manager's real Connect stream with scripted
 * workers and a fake clock: tasks of a lost worker are UNKNOWN, not moved at once; a worker
 * that said it is restarting gets the restart grace; a stall of the manager blames no
 * worker; one copy survives a return; unacknowledged assignments are sent again; a worker
 * without its container engine gets no new task.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import test from "ava";
import { HealthStatus, type Task, TaskEventType, TaskState } from "../gen/cube/v1/task_pb.js";
import { EngineStatus, WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { AssignmentAction } from "../gen/cube/v1/worker_service_pb.js";
import { FakeClock } from "./fake-clock.js";
import { eventually, FakeWorker, type Harness, harness, reach, spec } from "./manager-harness.js";

function statusOf(h: Harness, id: string): string {
  return WorkerStatus[h.cp.workers.get(id)?.status ?? 0];
}

async function waitStatus(h: Harness, id: string, want: WorkerStatus): Promise<void> {
  await eventually(() => {
    if (h.cp.workers.get(id)?.status !== want) throw new Error(`${id}: ${statusOf(h, id)}`);
  });
}

function now(h: Harness, id: string): Task {
  const task = h.cp.tasks.get(id)?.task;
  if (!task) throw new Error(`no task ${id}`);
  return task;
}

async function events(h: Harness, id: string) {
  await h.cp.committed();
  return (await h.tasks.listTaskEvents({ taskId: id })).events;
}

/**
 * A manager with two workers and one task "t" RUNNING on w1 (generation 1). The scripted
 * workers send no heartbeats: the heartbeat timeout is out of reach unless a test sets it.
 */
async function twoWorkers(
  t: Parameters<typeof harness>[0],
  options: Parameters<typeof harness>[1] = {},
  w2Options: ConstructorParameters<typeof FakeWorker>[1] = {},
) {
  const clock = new FakeClock();
  const h = await harness(t, {
    clock,
    downGraceMs: 1000,
    heartbeatTimeoutMs: 600_000,
    ...options,
  });
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  await h.tasks.runTask({ id: "t", spec: spec(), ...{} });
  await reach(h, "t", TaskState.RUNNING);
  const w2 = new FakeWorker("w2", w2Options);
  await w2.connect(h.transport);
  return { clock, h, w1, w2 };
}

test("a worker whose stream ends: its tasks UNKNOWN at once, then RUNNING again on return within the grace (same generation, nothing sent)", async (t) => {
  const { clock, h, w1 } = await twoWorkers(t);
  const lostAt = clock.now();
  w1.disconnect();
  await waitStatus(h, "w1", WorkerStatus.DISCONNECTED);
  const lost = await reach(h, "t", TaskState.UNKNOWN);
  t.is(lost.workerId, "w1", "it stays on its worker");
  t.is(lost.generation, 1n);
  t.is(timestampMs(lost.lostContactAt ?? ({ seconds: 0n, nanos: 0 } as never)), lostAt);
  t.regex(lost.reason, /^lost contact with worker w1: /);
  const held = h.cp.workers.get("w1");
  t.is(held?.tasks.size, 1, "an UNKNOWN task still holds its room on its worker");

  clock.advance(999);
  const back = new FakeWorker("w1", { seq: 1n });
  await back.connect(h.transport, [
    { taskId: "t", generation: 1n, state: TaskState.RUNNING, containerId: "c-t" },
  ]);
  const running = await reach(h, "t", TaskState.RUNNING, 1n);
  t.is(running.workerId, "w1");
  t.is(running.restartCount, 0, "nothing replaced");
  clock.advance(5000);
  t.is(statusOf(h, "w1"), "READY");
  t.deepEqual(back.assignments, [], "nothing sent again: it runs");
  const messages = (await events(h, "t"))
    .filter((e) => e.type === TaskEventType.STATE_CHANGED)
    .map((e) => `${TaskState[e.task?.state ?? 0]}: ${e.message}`);
  t.deepEqual(messages.slice(-2), [
    "UNKNOWN: lost contact with worker w1: stream closed",
    "RUNNING: contact with w1 restored",
  ]);
});

test("the manager stalls 10 s (a SIGSTOP): no worker is blamed; silence counts from the end of the stall", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, {
    clock,
    heartbeatIntervalMs: 500,
    heartbeatTimeoutMs: 2000,
    downGraceMs: 1000,
    startupGraceMs: 6000,
  });
  // Both workers last spoke when they registered; neither sends heartbeats unless told.
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  await h.tasks.runTask({ id: "t", spec: spec() });
  await reach(h, "t", TaskState.RUNNING);
  const w2 = new FakeWorker("w2");
  await w2.connect(h.transport);

  clock.stall(10_000);
  clock.advance(0); // the timers that fell due during the stall run, late
  t.is(
    statusOf(h, "w1"),
    "READY",
    "silent 10 s by the wall clock, but the manager was not running",
  );
  t.is(statusOf(h, "w2"), "READY");
  t.is(h.cp.workers.loop.stalls, 1);
  clock.advance(1900);
  t.is(statusOf(h, "w2"), "READY", "a fresh silence clock from the end of the stall");
  // w1 talks (what it sent during the stall would be read now, too); w2 stays silent.
  w1.send({ case: "heartbeat", value: {} });
  await eventually(() => {
    if (h.cp.workers.get("w1")?.lastSeenMs !== clock.now()) throw new Error("not read yet");
  });
  clock.advance(600);
  t.is(statusOf(h, "w2"), "DISCONNECTED", "silence past the timeout counts again");
  t.is(statusOf(h, "w1"), "READY");

  // A stream that ended during the stall shows up right after it: that worker gets the
  // start-up grace (it was dialling a manager that did not answer), not the down grace.
  await h.cp.committed();
  clock.stall(10_000);
  clock.advance(0);
  w1.disconnect();
  await waitStatus(h, "w1", WorkerStatus.DISCONNECTED);
  await reach(h, "t", TaskState.UNKNOWN);
  clock.advance(5999);
  t.is(statusOf(h, "w1"), "DISCONNECTED", "past the down grace, within the start-up grace");
  t.is(now(h, "t").generation, 1n);
  clock.advance(1);
  t.is(statusOf(h, "w1"), "DOWN");
});

test("a silent worker is judged when the heartbeat timeout runs out, not at the next heartbeat tick", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock, heartbeatIntervalMs: 500, heartbeatTimeoutMs: 2000 });
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  // Heard from 300 ms after a tick of its stream: the ticks fall at 500, 1000, … from there.
  clock.advance(300);
  w1.send({ case: "heartbeat", value: {} });
  await eventually(() => {
    if (h.cp.workers.get("w1")?.lastSeenMs !== clock.now()) throw new Error("not read yet");
  });
  clock.advance(2000);
  t.is(statusOf(h, "w1"), "READY", "silent for exactly the timeout");
  clock.advance(1);
  t.is(statusOf(h, "w1"), "DISCONNECTED", "silent past it: 2,001 ms, not the next tick at 2,200");
});

test("a DISCONNECTED worker whose grace ran out while the manager stalled gets a fresh one", async (t) => {
  const { clock, h, w1 } = await twoWorkers(t, { startupGraceMs: 6000 });
  w1.disconnect();
  await waitStatus(h, "w1", WorkerStatus.DISCONNECTED);
  clock.advance(500);
  clock.stall(10_000);
  clock.advance(0);
  t.is(statusOf(h, "w1"), "DISCONNECTED", "its grace fell due during the stall: not DOWN");
  clock.advance(5999);
  t.is(statusOf(h, "w1"), "DISCONNECTED");
  clock.advance(1);
  t.is(statusOf(h, "w1"), "DOWN");
  await reach(h, "t", TaskState.RUNNING, 2n);
});

test("a worker that says it is restarting gets the restart grace: nothing replaced within it, replaced after it", async (t) => {
  const { clock, h, w1 } = await twoWorkers(t, { restartGraceMs: 30_000 });
  w1.send({ case: "leaving", value: { restarting: true, reason: "SIGTERM" } });
  w1.disconnect();
  await waitStatus(h, "w1", WorkerStatus.DISCONNECTED);
  const lost = await reach(h, "t", TaskState.UNKNOWN);
  t.is(lost.reason, "lost contact with worker w1: restarting (SIGTERM)");
  clock.advance(29_999);
  t.is(statusOf(h, "w1"), "DISCONNECTED");
  t.is(now(h, "t").generation, 1n, "not replaced within the restart grace");
  clock.advance(1);
  t.is(statusOf(h, "w1"), "DOWN");
  const moved = await reach(h, "t", TaskState.RUNNING, 2n);
  t.is(moved.workerId, "w2");
  t.regex(
    (await events(h, "t")).find((e) => e.task?.generation === 2n)?.message ?? "",
    /^replaced: moved from w1 \(DOWN: not back after restarting within 30s\) to w2$/,
  );
});

test("a restarting worker back within the restart grace keeps its tasks; the next plain disconnect gets the down grace again", async (t) => {
  const { clock, h, w1 } = await twoWorkers(t, { restartGraceMs: 30_000 });
  w1.send({ case: "leaving", value: { restarting: true } });
  w1.disconnect();
  await waitStatus(h, "w1", WorkerStatus.DISCONNECTED);
  clock.advance(20_000);
  const back = new FakeWorker("w1", { seq: 1n });
  await back.connect(h.transport, [{ taskId: "t", generation: 1n, state: TaskState.RUNNING }]);
  await reach(h, "t", TaskState.RUNNING, 1n);
  back.disconnect();
  await waitStatus(h, "w1", WorkerStatus.DISCONNECTED);
  clock.advance(1000);
  t.is(statusOf(h, "w1"), "DOWN", "the goodbye was for that one restart");
});

test("lost, replaced, and the replacement RUNNING when the worker returns: the returning copy is stopped, and the events say so", async (t) => {
  const { clock, h, w1, w2 } = await twoWorkers(t);
  w1.disconnect();
  await waitStatus(h, "w1", WorkerStatus.DISCONNECTED);
  clock.advance(1000);
  await reach(h, "t", TaskState.RUNNING, 2n);
  t.is(now(h, "t").workerId, "w2");
  t.is(h.cp.workers.get("w1")?.tasks.size, 0, "its room moved with it");

  const back = new FakeWorker("w1", { seq: 1n });
  await back.connect(h.transport, [
    { taskId: "t", generation: 1n, state: TaskState.RUNNING, containerId: "c-old" },
  ]);
  const stop = await back.waitFor((a) => a.task?.id === "t");
  t.is(stop.action, AssignmentAction.STOP);
  t.is(stop.task?.generation, 1n);
  t.false(
    w2.assignments.some((a) => a.action === AssignmentAction.STOP),
    "the replacement stays",
  );
  const copy = (await events(h, "t")).find((e) => e.type === TaskEventType.COPY_STOPPED);
  t.is(
    copy?.message,
    "stopping the copy on w1 (generation 1) that came back: the replacement is RUNNING on w2 (generation 2)",
  );
  t.is(now(h, "t").workerId, "w2");
});

test("lost, replaced, and the replacement not RUNNING yet when the worker returns: the returning copy is kept, the replacement stopped", async (t) => {
  // w2 takes the replacement but never reports it RUNNING (a slow pull).
  const { clock, h, w1, w2 } = await twoWorkers(t, {}, { auto: false });
  w1.disconnect();
  await waitStatus(h, "w1", WorkerStatus.DISCONNECTED);
  clock.advance(1000);
  await reach(h, "t", TaskState.SCHEDULED, 2n);
  await w2.waitFor((a) => a.action === AssignmentAction.RUN && a.task?.generation === 2n);

  const back = new FakeWorker("w1", { seq: 1n });
  await back.connect(h.transport, [
    { taskId: "t", generation: 1n, state: TaskState.RUNNING, containerId: "c-old" },
  ]);
  const kept = await reach(h, "t", TaskState.RUNNING, 1n);
  t.is(kept.workerId, "w1", "the task points at the copy that came back");
  t.is(kept.containerId, "c-old");
  const stop = await w2.waitFor((a) => a.action === AssignmentAction.STOP);
  t.is(stop.task?.generation, 2n, "the replacement is stopped");
  t.false(
    back.assignments.some((a) => a.task?.id === "t"),
    "nothing sent to the worker that kept it",
  );
  t.is(h.cp.workers.get("w2")?.tasks.size, 0);
  t.is(h.cp.workers.get("w1")?.tasks.size, 1);
  const said = (await events(h, "t")).map((e) => e.message);
  t.true(
    said.includes(
      "kept the copy on w1 (generation 1) that came back: no replacement runs (it is SCHEDULED); stopping the replacement on w2 (generation 2)",
    ),
    said.join("\n"),
  );
  // Updates of the stopped replacement are stale from now on.
  w2.update("t", 2n, TaskState.RUNNING);
  w2.update("t", 2n, TaskState.COMPLETED, { reason: "stopped" });
  await eventually(() => {
    if (w2.acks.at(-1) !== 2n) throw new Error("not stored yet");
  });
  t.is(now(h, "t").state, TaskState.RUNNING);
  t.is(now(h, "t").workerId, "w1");
});

/**
 * w1 registered again as an agent started at `agentMs` with "t" RUNNING, then that agent
 * killed (its stream ends) and the down grace run out: "t" is RUNNING on w2 at generation 2.
 */
async function agentLostAndReplaced(
  h: Harness,
  clock: FakeClock,
  w1: FakeWorker,
  agentMs: number,
): Promise<void> {
  w1.disconnect();
  const a = new FakeWorker("w1", { seq: 1n, agentStartedAtMs: agentMs });
  await a.connect(h.transport, [ORIGINAL]);
  await reach(h, "t", TaskState.RUNNING, 1n);
  a.disconnect();
  await waitStatus(h, "w1", WorkerStatus.DISCONNECTED);
  clock.advance(1000);
  await reach(h, "t", TaskState.RUNNING, 2n);
}

/** The copy of "t" w1 ran before it was lost. */
const ORIGINAL = {
  taskId: "t",
  generation: 1n,
  state: TaskState.RUNNING,
  containerId: "c-old",
} as const;

test("an agent that restarted (a new agent_started_at) and is back within the restart grace keeps its running copies; the RUNNING replacement is stopped", async (t) => {
  const { clock, h, w1, w2 } = await twoWorkers(t);
  // kill -9 of agent A: the down grace runs out and the task is replaced, RUNNING on w2.
  await agentLostAndReplaced(h, clock, w1, 1_000);
  t.is(now(h, "t").workerId, "w2");
  // Agent B on the same host, 1.5 s after agent A was last heard: its container ran on. Its
  // first stream ends before its inventory; the next one still counts as the restarted agent.
  clock.advance(500);
  const first = new FakeWorker("w1", { seq: 1n, agentStartedAtMs: 2_000 });
  await first.connect(h.transport, "none");
  first.disconnect();
  const b = new FakeWorker("w1", { seq: 1n, agentStartedAtMs: 2_000 });
  await b.connect(h.transport, [ORIGINAL]);
  const kept = await reach(h, "t", TaskState.RUNNING, 1n);
  t.is(kept.workerId, "w1", "the original copy is kept");
  t.is(kept.containerId, "c-old");
  t.is(kept.restartCount, 0, "the move it was kept over was no restart of the task");
  const stop = await w2.waitFor((x) => x.action === AssignmentAction.STOP);
  t.is(stop.task?.generation, 2n, "the replacement is stopped");
  t.false(
    b.assignments.some((x) => x.task?.id === "t"),
    "nothing stopped or sent again on the restarted agent",
  );
  const said = (await events(h, "t")).map((e) => e.message);
  t.true(
    said.includes(
      "kept the copy on w1 (generation 1) that came back: its agent restarted and was back within 1.5s, its containers running all along; stopping the replacement on w2 (generation 2)",
    ),
    said.join("\n"),
  );
  t.is(
    h.cp.workers.get("w1")?.record.agentStartedAt?.seconds,
    2n,
    "ListWorkers shows the new agent",
  );
});

test("the same agent back (a partition, a freeze) or a restarted one back after the restart grace: the RUNNING replacement wins", async (t) => {
  for (const [name, agentMs, awayMs] of [
    ["same agent", 1_000, 1_500],
    ["restarted, after the grace", 2_000, 31_000],
  ] as const) {
    const { clock, h, w1 } = await twoWorkers(t);
    await agentLostAndReplaced(h, clock, w1, 1_000);
    clock.advance(awayMs - 1000);
    const back = new FakeWorker("w1", { seq: 1n, agentStartedAtMs: agentMs });
    await back.connect(h.transport, [ORIGINAL]);
    const stop = await back.waitFor((x) => x.task?.id === "t");
    t.is(stop.action, AssignmentAction.STOP, name);
    t.is(now(h, "t").workerId, "w2", name);
    t.is(now(h, "t").generation, 2n, name);
  }
});

test("a health-checked replacement that is not healthy yet loses to the copy that comes back", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock, downGraceMs: 1000, heartbeatTimeoutMs: 600_000 });
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  await h.tasks.runTask({
    id: "t",
    spec: spec({ ports: [{ containerPort: 80 }], healthCheck: { path: "/health" } }),
  });
  await reach(h, "t", TaskState.RUNNING);
  const w2 = new FakeWorker("w2");
  await w2.connect(h.transport);
  w1.disconnect();
  await waitStatus(h, "w1", WorkerStatus.DISCONNECTED);
  clock.advance(1000);
  await reach(h, "t", TaskState.RUNNING, 2n); // RUNNING on w2, health not reported yet
  const back = new FakeWorker("w1", { seq: 1n });
  await back.connect(h.transport, [{ taskId: "t", generation: 1n, state: TaskState.RUNNING }]);
  const kept = await reach(h, "t", TaskState.RUNNING, 1n);
  t.is(kept.workerId, "w1");
  t.is(kept.health, HealthStatus.UNSPECIFIED, "health starts over: the worker reports it");
  await w2.waitFor((a) => a.action === AssignmentAction.STOP);
});

test("lost, replaced, nothing fits elsewhere (PENDING): the copy that comes back is kept", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock, downGraceMs: 1000 });
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  await h.tasks.runTask({ id: "t", spec: spec() });
  await reach(h, "t", TaskState.RUNNING);
  w1.disconnect();
  await waitStatus(h, "w1", WorkerStatus.DISCONNECTED);
  clock.advance(1000);
  await reach(h, "t", TaskState.PENDING);
  const back = new FakeWorker("w1", { seq: 1n });
  await back.connect(h.transport, [{ taskId: "t", generation: 1n, state: TaskState.RUNNING }]);
  const kept = await reach(h, "t", TaskState.RUNNING, 1n);
  t.is(kept.workerId, "w1");
  t.is(h.cp.pending.size, 0);
  t.deepEqual(back.assignments, [], "the copy runs: nothing to send");
});

test("a task UNKNOWN whose worker comes back without it is SCHEDULED and sent again", async (t) => {
  const { clock, h, w1 } = await twoWorkers(t);
  w1.disconnect();
  await reach(h, "t", TaskState.UNKNOWN);
  clock.advance(500);
  const back = new FakeWorker("w1", { seq: 1n });
  await back.connect(h.transport, []);
  const run = await back.waitFor((a) => a.task?.id === "t");
  t.is(run.action, AssignmentAction.RUN);
  t.is(run.task?.generation, 1n);
  await reach(h, "t", TaskState.RUNNING, 1n);
});

test("an assignment the worker does not acknowledge is sent again after the resend period, on the same stream", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, {
    clock,
    heartbeatIntervalMs: 500,
    heartbeatTimeoutMs: 600_000,
    assignmentResendMs: 5000,
  });
  const w = new FakeWorker("w1", { auto: false, ack: false });
  await w.connect(h.transport);
  await h.tasks.runTask({ id: "t", spec: spec() });
  await w.waitFor((a) => a.task?.id === "t");
  const count = () => w.assignments.filter((a) => a.task?.id === "t").length;
  // Seen unacknowledged at one check, sent again at the next: between one and two periods.
  clock.advance(5000);
  await new Promise((r) => setTimeout(r, 50));
  t.is(count(), 1, "not yet: it was sent less than a period ago at the first check");
  clock.advance(5000);
  await eventually(() => {
    if (count() !== 2) throw new Error(`${count()} sent`);
  });
  const again = w.assignments.at(-1);
  t.is(again?.action, AssignmentAction.RUN);
  t.is(again?.task?.generation, 1n);
  w.ackAll();
  await eventually(() => {
    if (h.cp.workers.get("w1")?.unacked.size !== 0) throw new Error("not acknowledged yet");
  });
  clock.advance(20_000);
  await new Promise((r) => setTimeout(r, 50));
  t.is(count(), 2, "an acknowledged assignment is not sent again");
});

test("a worker whose container engine is down gets no new task, keeps its own, and gets new ones once it is back", async (t) => {
  const h = await harness(t, { clock: new FakeClock() });
  const w = new FakeWorker("w1");
  await w.connect(h.transport);
  await h.tasks.runTask({ id: "old", spec: spec() });
  await reach(h, "old", TaskState.RUNNING);
  w.send({
    case: "engine",
    value: { status: EngineStatus.DOWN, reason: "connect ENOENT /var/run/docker.sock" },
  });
  await eventually(async () => {
    const { worker } = await h.workers.getWorker({ id: "w1" });
    if (worker?.engine?.status !== EngineStatus.DOWN) throw new Error("not yet");
    t.is(worker.engine.reason, "connect ENOENT /var/run/docker.sock");
    t.is(worker.status, WorkerStatus.READY, "the worker itself is still there");
  });
  const { task } = await h.tasks.runTask({ id: "new", spec: spec() });
  t.is(task?.state, TaskState.PENDING);
  t.is(task?.reason, "0/1 workers fit: 1 is without its container engine");
  t.is(now(h, "old").state, TaskState.RUNNING, "its tasks stay");
  w.send({ case: "engine", value: { status: EngineStatus.UP } });
  const placed = await reach(h, "new", TaskState.RUNNING);
  t.is(placed.workerId, "w1");
});
