/**
 * One task lifecycle, driven through the manager: moves a worker may not report are refused
 * and logged, ControlPlane.change refuses an illegal move a rule asks for, the legal moves
 * happen as the transition table says, and the manager's timers (restart back-off, down
 * grace, start-up grace, heartbeat timeout) run on a FakeClock. The worker is the harness's
 * scripted one, on the real Connect stream protocol: the test still awaits the stream's
 * promises between steps, but no step waits for wall-clock time to pass.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import { pino } from "pino";
import {
  DesiredState,
  RestartMode,
  type Task,
  type TaskEvent,
  TaskEventType,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import { WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { AssignmentAction } from "../gen/cube/v1/worker_service_pb.js";
import { failed, running, type TaskPatch } from "../manager/core/lifecycle.js";
import { MemoryStore } from "../manager/store/memory-store.js";
import type { TaskRecord } from "../manager/store/store.js";
import { FakeClock } from "./fake-clock.js";
import { eventually, FakeWorker, type Harness, harness, spec } from "./manager-harness.js";

/** A logger writing JSON lines to memory, so a test can read what was logged. */
function memoryLogger() {
  const lines: string[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
  return {
    logger,
    entries: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** A MemoryStore that counts the task records and events written to it. */
class CountingStore extends MemoryStore {
  taskWrites = 0;
  eventWrites = 0;
  override putTask(record: TaskRecord): void {
    this.taskWrites++;
    super.putTask(record);
  }
  override putEvent(event: TaskEvent): void {
    this.eventWrites++;
    super.putEvent(event);
  }
}

/** The task as the control plane holds it now (no round trip). */
function now(h: Harness, id: string): Task {
  const task = h.cp.tasks.get(id)?.task;
  if (!task) throw new Error(`no task ${id}`);
  return task;
}

/** Resolves once the task is in `want` (at `generation`, when given). */
function reach(h: Harness, id: string, want: TaskState, generation?: bigint): Promise<Task> {
  return eventually(() => {
    const task = now(h, id);
    if (task.state !== want || (generation !== undefined && task.generation !== generation)) {
      throw new Error(
        `${id}: ${TaskState[task.state]} gen ${task.generation} (${task.reason}), want ${TaskState[want]}`,
      );
    }
    return task;
  });
}

function workerStatus(h: Harness, id: string): string {
  return WorkerStatus[h.cp.workers.get(id)?.status ?? 0] ?? "?";
}

function waitStatus(h: Harness, id: string, want: WorkerStatus): Promise<void> {
  return eventually(() => {
    if (h.cp.workers.get(id)?.status !== want) throw new Error(`${id}: ${workerStatus(h, id)}`);
  });
}

/** The states a task went through, from its stored events (CREATED and STATE_CHANGED). */
async function path(h: Harness, id: string): Promise<string[]> {
  const { events } = await h.tasks.listTaskEvents({ taskId: id });
  return events
    .filter((e) => e.type === TaskEventType.CREATED || e.type === TaskEventType.STATE_CHANGED)
    .map((e) => TaskState[e.task?.state ?? 0] ?? "?");
}

const onFailure = (backoffMs: number, maxRestarts = 3) =>
  spec({
    restartPolicy: {
      mode: RestartMode.ON_FAILURE,
      maxRestarts,
      backoff: durationFromMs(backoffMs),
    },
  });

// ---------------------------------------------------------------------------------------
// Illegal updates from a worker: refused, logged, nothing changes.

const REFUSED: {
  name: string;
  /** Where the worker brings the task first (legally). */
  reach: TaskState.RUNNING | TaskState.COMPLETED;
  report: TaskState;
  reason: string;
}[] = [
  {
    name: "RUNNING for a task the manager has COMPLETED at that generation",
    reach: TaskState.COMPLETED,
    report: TaskState.RUNNING,
    reason: "COMPLETED → RUNNING is not in the transition table",
  },
  {
    name: "PENDING for a RUNNING task",
    reach: TaskState.RUNNING,
    report: TaskState.PENDING,
    reason: "RUNNING → PENDING is the manager's to decide, not a worker's to report",
  },
  {
    name: "SCHEDULED for a RUNNING task (a restart is the manager's)",
    reach: TaskState.RUNNING,
    report: TaskState.SCHEDULED,
    reason: "RUNNING → SCHEDULED is the manager's to decide, not a worker's to report",
  },
  {
    name: "SCHEDULED for a COMPLETED task (it would start again with no restart)",
    reach: TaskState.COMPLETED,
    report: TaskState.SCHEDULED,
    reason: "COMPLETED → SCHEDULED is the manager's to decide, not a worker's to report",
  },
  {
    name: "UNSPECIFIED for a RUNNING task",
    reach: TaskState.RUNNING,
    report: TaskState.UNSPECIFIED,
    reason: "RUNNING → UNSPECIFIED is not in the transition table",
  },
  {
    name: "an unknown state number",
    reach: TaskState.RUNNING,
    report: 99 as TaskState,
    reason: "UNKNOWN(99) is not a task state",
  },
];

for (const c of REFUSED) {
  test(`a worker reporting ${c.name} is refused: the task stays, no event, a warning says why`, async (t) => {
    const log = memoryLogger();
    const h = await harness(t, { logger: log.logger, clock: new FakeClock() });
    const w = new FakeWorker("w1", { auto: false });
    await w.connect(h.transport);
    await h.tasks.runTask({ id: "t", spec: spec() });
    w.update("t", 1n, TaskState.RUNNING);
    await reach(h, "t", TaskState.RUNNING);
    if (c.reach === TaskState.COMPLETED) {
      w.update("t", 1n, TaskState.COMPLETED, { exitCode: 0, reason: "exit code 0" });
      await reach(h, "t", TaskState.COMPLETED);
    }
    await h.cp.committed();
    const before = now(h, "t");
    const revision = h.cp.revision;
    const { events: eventsBefore } = await h.tasks.listTaskEvents({ taskId: "t" });

    const seq = w.update("t", 1n, c.report, { reason: "bogus", containerId: "c-t" });
    // The ack shows the manager has read the update (and stored its seq, so it is not replayed).
    await eventually(() => {
      if (!w.acks.includes(seq)) throw new Error(`acks ${w.acks}`);
    });

    t.is(now(h, "t"), before, "the task snapshot is the same object");
    t.is(h.cp.revision, revision, "no revision used");
    const { events } = await h.tasks.listTaskEvents({ taskId: "t" });
    t.deepEqual(
      events.map((e) => e.revision),
      eventsBefore.map((e) => e.revision),
      "no event stored",
    );
    // Nothing was published either: a watcher from the revision before sees the next real
    // change first.
    const ac = new AbortController();
    t.teardown(() => ac.abort());
    const watch = h.tasks
      .watchTasks({ afterRevision: revision }, { signal: ac.signal })
      [Symbol.asyncIterator]();
    await h.tasks.runTask({ id: "sentinel", spec: spec() });
    const first = await watch.next();
    t.is(first.value?.event?.task?.id, "sentinel");
    t.is(first.value?.event?.type, TaskEventType.CREATED);

    const refusals = log
      .entries()
      .filter((e) => e.msg === "refused an update with an illegal state move");
    t.is(refusals.length, 1);
    t.like(refusals[0], {
      level: 40, // warn
      task: "t",
      worker: "w1",
      generation: 1,
      seq: Number(seq),
      from: TaskState[c.reach],
      reason: c.reason,
    });
  });
}

test("a refused update does not stop later legal ones of the same task", async (t) => {
  const log = memoryLogger();
  const h = await harness(t, { logger: log.logger, clock: new FakeClock() });
  const w = new FakeWorker("w1", { auto: false });
  await w.connect(h.transport);
  await h.tasks.runTask({ id: "t", spec: spec() });
  w.update("t", 1n, TaskState.PENDING);
  w.update("t", 1n, TaskState.RUNNING);
  const task = await reach(h, "t", TaskState.RUNNING);
  t.is(task.generation, 1n);
  t.deepEqual(await path(h, "t"), ["PENDING", "SCHEDULED", "RUNNING"]);
  t.is(
    log.entries().filter((e) => e.msg === "refused an update with an illegal state move").length,
    1,
  );
});

// ---------------------------------------------------------------------------------------
// An illegal move asked for by a rule: ControlPlane.change throws and records nothing.

const ILLEGAL_CHANGES: {
  name: string;
  reach: TaskState.PENDING | TaskState.RUNNING | TaskState.COMPLETED;
  patch: (nowMs: number) => TaskPatch;
  message: string;
}[] = [
  {
    name: "PENDING → RUNNING: a task never placed cannot run",
    reach: TaskState.PENDING,
    patch: (ms) => running(ms),
    message: "illegal task state transition PENDING → RUNNING",
  },
  {
    name: "COMPLETED → FAILED: an ended task does not end again",
    reach: TaskState.COMPLETED,
    patch: (ms) => failed("late", ms),
    message: "illegal task state transition COMPLETED → FAILED",
  },
  {
    name: "COMPLETED → RUNNING: only a restart (SCHEDULED) starts it again",
    reach: TaskState.COMPLETED,
    patch: (ms) => running(ms),
    message: "illegal task state transition COMPLETED → RUNNING",
  },
  {
    name: "RUNNING → UNSPECIFIED",
    reach: TaskState.RUNNING,
    patch: () => ({ state: TaskState.UNSPECIFIED }),
    message: "illegal task state transition RUNNING → UNSPECIFIED",
  },
];

for (const c of ILLEGAL_CHANGES) {
  test(`ControlPlane.change throws on ${c.name}, and records nothing`, async (t) => {
    const store = new CountingStore();
    const clock = new FakeClock();
    const h = await harness(t, { store, clock });
    const w = new FakeWorker("w1");
    if (c.reach !== TaskState.PENDING) await w.connect(h.transport);
    await h.tasks.runTask({ id: "t", spec: spec() });
    if (c.reach !== TaskState.PENDING) await reach(h, "t", TaskState.RUNNING);
    if (c.reach === TaskState.COMPLETED) {
      await h.tasks.stopTask({ id: "t" });
      await reach(h, "t", TaskState.COMPLETED);
    }
    await h.cp.committed();
    const entry = h.cp.tasks.get("t");
    if (!entry) throw new Error("no entry");
    const before = entry.task;
    const revision = h.cp.revision;
    const writes = [store.taskWrites, store.eventWrites];
    const pending = [...h.cp.pending.keys()];
    const onWorker = [...(h.cp.workers.get("w1")?.tasks ?? [])];

    const error = t.throws(() =>
      h.cp.change(entry, c.patch(clock.now()), TaskEventType.STATE_CHANGED, "by a buggy rule"),
    );
    t.is(error?.message, c.message);

    t.is(entry.task, before, "the snapshot is untouched");
    t.is(h.cp.revision, revision, "no revision used");
    t.deepEqual([store.taskWrites, store.eventWrites], writes, "nothing written to the store");
    t.deepEqual([...h.cp.pending.keys()], pending, "pending queue as it was");
    t.deepEqual([...(h.cp.workers.get("w1")?.tasks ?? [])], onWorker, "allocations as they were");
    const { events } = await h.tasks.listTaskEvents({ taskId: "t" });
    t.is(events.at(-1)?.revision, before.revision, "no event after the last real change");
  });
}

// ---------------------------------------------------------------------------------------
// Legal moves, driven through the manager.

interface Ctx {
  h: Harness;
  clock: FakeClock;
}

const LEGAL: {
  name: string;
  options?: { downGraceMs?: number };
  /** Drives the task "t" through its moves. */
  drive(ctx: Ctx): Promise<void>;
  path: string[];
  check(t: ExecutionContext, task: Task): void;
}[] = [
  {
    name: "SCHEDULED → RUNNING: the worker reports the start",
    async drive({ h }) {
      const w = new FakeWorker("w1", { auto: false });
      await w.connect(h.transport);
      const { task } = await h.tasks.runTask({ id: "t", spec: spec() });
      if (task?.state !== TaskState.SCHEDULED) throw new Error("not SCHEDULED");
      w.update("t", 1n, TaskState.RUNNING, { containerId: "c-1" });
      await reach(h, "t", TaskState.RUNNING);
    },
    path: ["PENDING", "SCHEDULED", "RUNNING"],
    check(t, task) {
      t.is(task.containerId, "c-1");
      t.truthy(task.startedAt);
      t.is(task.generation, 1n);
    },
  },
  {
    name: "RUNNING → FAILED → restart → SCHEDULED on the same worker",
    async drive({ h, clock }) {
      const w = new FakeWorker("w1");
      await w.connect(h.transport);
      await h.tasks.runTask({ id: "t", spec: onFailure(100) });
      await reach(h, "t", TaskState.RUNNING);
      w.update("t", 1n, TaskState.FAILED, { exitCode: 1, reason: "exit code 1" });
      await reach(h, "t", TaskState.FAILED);
      clock.advance(100);
      await reach(h, "t", TaskState.RUNNING, 2n);
    },
    path: ["PENDING", "SCHEDULED", "RUNNING", "FAILED", "SCHEDULED", "RUNNING"],
    check(t, task) {
      t.is(task.workerId, "w1");
      t.is(task.restartCount, 1);
      t.is(task.exitCode, undefined, "a new attempt has no exit code yet");
    },
  },
  {
    name: "PENDING → COMPLETED: stopped before it was placed",
    async drive({ h }) {
      const { task } = await h.tasks.runTask({ id: "t", spec: spec() });
      if (task?.state !== TaskState.PENDING) throw new Error("not PENDING");
      await h.tasks.stopTask({ id: "t" });
    },
    path: ["PENDING", "COMPLETED"],
    check(t, task) {
      t.is(task.reason, "stopped");
      t.is(task.desiredState, DesiredState.STOPPED);
      t.truthy(task.finishedAt);
    },
  },
  {
    name: 'RUNNING → COMPLETED "stopped": a stop the worker carried out',
    async drive({ h }) {
      const w = new FakeWorker("w1");
      await w.connect(h.transport);
      await h.tasks.runTask({ id: "t", spec: spec() });
      await reach(h, "t", TaskState.RUNNING);
      await h.tasks.stopTask({ id: "t" });
      await w.waitFor((a) => a.action === AssignmentAction.STOP);
      await reach(h, "t", TaskState.COMPLETED);
    },
    path: ["PENDING", "SCHEDULED", "RUNNING", "COMPLETED"],
    check(t, task) {
      t.is(task.reason, "stopped");
      t.is(task.workerId, "w1");
    },
  },
  {
    name: "worker DOWN → SCHEDULED on another worker",
    options: { downGraceMs: 500 },
    async drive({ h, clock }) {
      const w1 = new FakeWorker("w1");
      await w1.connect(h.transport);
      await h.tasks.runTask({ id: "t", spec: spec() });
      await reach(h, "t", TaskState.RUNNING);
      await new FakeWorker("w2").connect(h.transport);
      w1.disconnect();
      await waitStatus(h, "w1", WorkerStatus.DISCONNECTED);
      clock.advance(500);
      await reach(h, "t", TaskState.RUNNING, 2n);
    },
    path: ["PENDING", "SCHEDULED", "RUNNING", "UNKNOWN", "SCHEDULED", "RUNNING"],
    check(t, task) {
      t.is(task.workerId, "w2");
      t.is(task.restartCount, 0, "a move off a lost worker is not a restart");
    },
  },
  {
    name: "worker DOWN → PENDING when no other worker can take it",
    options: { downGraceMs: 500 },
    async drive({ h, clock }) {
      const w1 = new FakeWorker("w1");
      await w1.connect(h.transport);
      await h.tasks.runTask({ id: "t", spec: spec() });
      await reach(h, "t", TaskState.RUNNING);
      w1.disconnect();
      await waitStatus(h, "w1", WorkerStatus.DISCONNECTED);
      clock.advance(500);
      await reach(h, "t", TaskState.PENDING);
    },
    path: ["PENDING", "SCHEDULED", "RUNNING", "UNKNOWN", "PENDING"],
    check(t, task) {
      t.is(task.workerId, "");
      t.true(task.reason.startsWith("worker w1 is DOWN; "), task.reason);
    },
  },
];

for (const c of LEGAL) {
  test(`legal move: ${c.name}`, async (t) => {
    const clock = new FakeClock();
    const h = await harness(t, { clock, ...c.options });
    await c.drive({ h, clock });
    await h.cp.committed();
    t.deepEqual(await path(h, "t"), c.path);
    c.check(t, now(h, "t"));
  });
}

// ---------------------------------------------------------------------------------------
// Timers on the FakeClock.

test("restart back-off: nothing before it runs out, the RUN right after", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock });
  const w = new FakeWorker("w1");
  await w.connect(h.transport);
  await h.tasks.runTask({ id: "t", spec: onFailure(100) });
  for (const [gen, backoff] of [
    [1n, 100],
    [2n, 200],
  ] as const) {
    await reach(h, "t", TaskState.RUNNING, gen);
    w.update("t", gen, TaskState.FAILED, { exitCode: 1, reason: "exit code 1" });
    await eventually(() => {
      if (!h.cp.tasks.get("t")?.restartTimer) throw new Error("no restart waiting");
    });
    t.is(now(h, "t").state, TaskState.FAILED);

    clock.advance(backoff - 1);
    t.is(
      now(h, "t").state,
      TaskState.FAILED,
      `still FAILED 1 ms before the ${backoff} ms back-off`,
    );
    t.is(now(h, "t").generation, gen);
    t.false(
      w.assignments.some((a) => a.task?.generation === gen + 1n),
      "no RUN of the next generation yet",
    );

    clock.advance(1);
    const restarted = now(h, "t");
    t.is(restarted.state, TaskState.SCHEDULED, "restarted the moment the back-off ran out");
    t.is(restarted.generation, gen + 1n);
    t.is(restarted.workerId, "w1");
    const run = await w.waitFor(
      (a) => a.action === AssignmentAction.RUN && a.task?.generation === gen + 1n,
    );
    t.is(run.task?.id, "t");
  }
  const { events } = await h.tasks.listTaskEvents({ taskId: "t" });
  t.deepEqual(
    events.filter((e) => e.type === TaskEventType.PROGRESS).map((e) => e.message),
    ["restarting in 100ms (1/3)", "restarting in 200ms (2/3)"],
  );
});

test("down grace: a worker whose stream ended is DISCONNECTED, then DOWN exactly after the grace, and its task moves", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock, downGraceMs: 1000 });
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  await h.tasks.runTask({ id: "t", spec: spec() });
  await reach(h, "t", TaskState.RUNNING);
  const w2 = new FakeWorker("w2");
  await w2.connect(h.transport);

  w1.disconnect();
  await waitStatus(h, "w1", WorkerStatus.DISCONNECTED);
  clock.advance(999);
  t.is(workerStatus(h, "w1"), "DISCONNECTED");
  t.is(now(h, "t").workerId, "w1", "the task stays during the grace");
  t.is(now(h, "t").state, TaskState.UNKNOWN, "contact with it is lost");

  clock.advance(1);
  t.is(workerStatus(h, "w1"), "DOWN");
  const moved = now(h, "t");
  t.is(moved.state, TaskState.SCHEDULED);
  t.is(moved.workerId, "w2");
  t.is(moved.generation, 2n);
  await w2.waitFor((a) => a.task?.id === "t" && a.task.generation === 2n);
  await reach(h, "t", TaskState.RUNNING, 2n);
});

test("startup grace: after a restart of the control plane, a worker that does not come back is DOWN exactly after the grace", async (t) => {
  const clock = new FakeClock();
  let h = await harness(t, { clock, downGraceMs: 300, startupGraceMs: 800 });
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  await h.tasks.runTask({ id: "t", spec: spec() });
  await reach(h, "t", TaskState.RUNNING);
  w1.disconnect();
  h = await h.restart();
  t.is(workerStatus(h, "w1"), "DISCONNECTED");
  await new FakeWorker("w2").connect(h.transport);

  // Past the down grace, within the start-up grace: still waiting for w1.
  clock.advance(799);
  t.is(workerStatus(h, "w1"), "DISCONNECTED");
  t.is(now(h, "t").workerId, "w1");

  clock.advance(1);
  t.is(workerStatus(h, "w1"), "DOWN");
  const moved = now(h, "t");
  t.is(moved.workerId, "w2");
  t.is(moved.generation, 2n);
  await reach(h, "t", TaskState.RUNNING, 2n);
});

test("heartbeat timeout: a silent worker is DISCONNECTED as soon as the timeout runs out; one that talks stays READY", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, {
    clock,
    heartbeatIntervalMs: 100,
    heartbeatTimeoutMs: 300,
    downGraceMs: 60_000,
  });
  const quiet = new FakeWorker("quiet");
  const chatty = new FakeWorker("chatty");
  await quiet.connect(h.transport);
  await chatty.connect(h.transport);
  // Both were last heard at the clock's start.
  const talk = async () => {
    chatty.send({ case: "heartbeat", value: {} });
    await eventually(() => {
      if (h.cp.workers.get("chatty")?.lastSeenMs !== clock.now()) throw new Error("not heard");
    });
  };
  for (let i = 0; i < 3; i++) {
    clock.advance(100);
    await talk();
  }
  t.is(workerStatus(h, "quiet"), "READY", "silent for exactly the timeout is not past it");
  clock.advance(100);
  t.is(workerStatus(h, "quiet"), "DISCONNECTED");
  t.is(workerStatus(h, "chatty"), "READY");
  await eventually(() => {
    if (!quiet.ended) throw new Error("stream still open");
  });
  t.regex(ConnectError.from(quiet.ended?.error).rawMessage, /silent for 301ms/);
  t.is(chatty.ended, undefined);
});
