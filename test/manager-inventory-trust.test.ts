/**
 * A worker's inventory is what it claims, not what the manager placed: only a copy of the
 * generation a task had when it was moved off this very worker (it went DOWN) may be kept
 * when the worker comes back. A copy of any other task is stopped (id and generation only),
 * logged, and the task stays where its record says.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import test from "ava";
import { DesiredState, type Task, TaskSchema, TaskState } from "../gen/cube/v1/task_pb.js";
import { WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { AssignmentAction, InventoryItemSchema } from "../gen/cube/v1/worker_service_pb.js";
import { reconcile } from "../manager/rules/reconcile.js";
import { LevelStore } from "../manager/store/level-store.js";
import { FakeClock } from "./fake-clock.js";
import { tempDir } from "./fixtures.js";
import { eventually, FakeWorker, type Harness, harness, reach, spec } from "./manager-harness.js";

function now(h: Harness, id: string): Task {
  const task = h.cp.tasks.get(id)?.task;
  if (!task) throw new Error(`no task ${id}`);
  return task;
}

async function messages(h: Harness, id: string): Promise<string[]> {
  await h.cp.committed();
  return (await h.tasks.listTaskEvents({ taskId: id })).events.map((e) => e.message);
}

/**
 * Runs `ids` on w1, connects w2 (which takes replacements but never starts them: no
 * replacement runs), then w1 goes DOWN (the harness's 1 s down grace on its FakeClock) and
 * every task is SCHEDULED on w2 at generation 2. Returns w2.
 */
async function movedOffW1(h: Harness, ids: string[]): Promise<FakeWorker> {
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  for (const id of ids) await h.tasks.runTask({ id, spec: spec() });
  for (const id of ids) await reach(h, id, TaskState.RUNNING, 1n);
  const w2 = new FakeWorker("w2", { auto: false });
  await w2.connect(h.transport);
  w1.disconnect();
  for (const id of ids) await reach(h, id, TaskState.UNKNOWN);
  (h.clock as FakeClock).advance(1000);
  for (const id of ids) await reach(h, id, TaskState.SCHEDULED, 2n);
  return w2;
}

test("a worker claiming a running copy of a task SCHEDULED on another worker gets a STOP; the task stays put", async (t) => {
  const h = await harness(t, { heartbeatTimeoutMs: 600_000 });
  // w1 takes the task but is slow to start it: no replacement "runs", the case in which a
  // returning copy used to win.
  const w1 = new FakeWorker("w1", { auto: false });
  await w1.connect(h.transport);
  await h.tasks.runTask({ id: "t", spec: spec({ secretEnv: { K: "secret" } }) });
  await reach(h, "t", TaskState.SCHEDULED, 1n);
  const before = await messages(h, "t");

  const w3 = new FakeWorker("w3");
  await w3.connect(h.transport, [
    { taskId: "t", generation: 7n, state: TaskState.RUNNING, containerId: "c-forged" },
  ]);
  const stop = await w3.waitFor((a) => a.task?.id === "t");
  t.is(stop.action, AssignmentAction.STOP);
  t.is(stop.task?.generation, 7n, "the copy it claims is stopped");
  t.is(stop.task?.spec, undefined, "and the STOP carries no spec");
  const task = now(h, "t");
  t.is(task.workerId, "w1", "the task stays on the worker it was placed on");
  t.is(task.generation, 1n);
  t.is(task.state, TaskState.SCHEDULED);
  t.is(task.containerId, "");
  t.is(h.cp.workers.get("w3")?.tasks.size, 0);
  t.is(h.cp.workers.get("w1")?.tasks.size, 1);
  t.false(
    w1.assignments.some((a) => a.action === AssignmentAction.STOP),
    "the real copy is not stopped",
  );
  t.deepEqual(await messages(h, "t"), before, "nothing recorded on the task");
});

test("a worker claiming a PENDING task it never ran gets a STOP; the task stays PENDING", async (t) => {
  const h = await harness(t, { heartbeatTimeoutMs: 600_000 });
  const w3 = new FakeWorker("w3", { capacity: { cpu: 1 } });
  await w3.connect(h.transport);
  // Fits nowhere: PENDING, generation 0.
  await h.tasks.runTask({ id: "t", spec: spec({ resources: { cpu: 64 } }) });
  await reach(h, "t", TaskState.PENDING);
  w3.disconnect();
  await eventually(() => {
    if (h.cp.workers.get("w3")?.status === WorkerStatus.READY) throw new Error("still READY");
  });
  const back = new FakeWorker("w3", { capacity: { cpu: 1 } });
  await back.connect(h.transport, [{ taskId: "t", generation: 0n, state: TaskState.RUNNING }]);
  const stop = await back.waitFor((a) => a.task?.id === "t");
  t.is(stop.action, AssignmentAction.STOP);
  t.is(now(h, "t").state, TaskState.PENDING, "not placed by a worker's say-so");
  t.is(now(h, "t").workerId, "");
});

test("a copy moved off a worker that went DOWN is still kept when that worker returns, but not one of another generation", async (t) => {
  const h = await harness(t, {
    clock: new FakeClock(),
    downGraceMs: 1000,
    heartbeatTimeoutMs: 600_000,
  });
  await movedOffW1(h, ["t", "u"]);
  // w1 returns with its copy of t (generation 1: what it ran) and a claim on u at a
  // generation it never had.
  const back = new FakeWorker("w1", { seq: 2n });
  await back.connect(h.transport, [
    { taskId: "t", generation: 1n, state: TaskState.RUNNING, containerId: "c-t" },
    { taskId: "u", generation: 5n, state: TaskState.RUNNING, containerId: "c-u" },
  ]);
  const kept = await reach(h, "t", TaskState.RUNNING, 1n);
  t.is(kept.workerId, "w1", "its own copy is kept, as before");
  const stop = await back.waitFor((a) => a.task?.id === "u");
  t.is(stop.action, AssignmentAction.STOP);
  t.is(stop.task?.generation, 5n);
  t.is(now(h, "u").workerId, "w2", "u stays on its replacement");
  t.is(now(h, "u").generation, 2n);
  t.is(h.cp.tasks.get("t")?.movedOff, undefined, "settled by the reconcile");
});

test("a manager restarted between a worker's DOWN and its return still keeps that worker's copy when no replacement runs", async (t) => {
  const dir = await tempDir(t);
  const store = await LevelStore.open(dir);
  t.teardown(() => store.close());
  const clock = new FakeClock();
  const h = await harness(t, { clock, store, downGraceMs: 1000, heartbeatTimeoutMs: 600_000 });
  const w2 = await movedOffW1(h, ["t"]);
  await h.cp.committed();
  w2.disconnect();

  // The manager restarts (its store on disk), then w1 comes back with the original.
  const after = await h.restart();
  t.deepEqual(after.cp.tasks.get("t")?.movedOff, new Map([["w1", 1n]]), "loaded from the store");
  const back = new FakeWorker("w1", { seq: 2n });
  await back.connect(after.transport, [
    { taskId: "t", generation: 1n, state: TaskState.RUNNING, containerId: "c-t" },
  ]);
  const kept = await reach(after, "t", TaskState.RUNNING, 1n);
  t.is(kept.workerId, "w1", "the original is kept");
  t.is(kept.containerId, "c-t");
  t.false(
    back.assignments.some((a) => a.action === AssignmentAction.STOP),
    "the original is not stopped",
  );
  await after.cp.committed();
  const again = await after.restart();
  t.is(again.cp.tasks.get("t")?.movedOff, undefined, "settled, and stored so");
});

test("reconcile (pure): with movedOff, only the generation moved off this worker is reclaimed", (t) => {
  const task = (id: string, extra: MessageInitShape<typeof TaskSchema> = {}) =>
    create(TaskSchema, {
      id,
      generation: 2n,
      workerId: "w2",
      state: TaskState.SCHEDULED,
      desiredState: DesiredState.RUNNING,
      ...extra,
    });
  const tasks = new Map([
    ["a", task("a")],
    ["b", task("b")],
    ["c", task("c", { state: TaskState.RUNNING })],
    ["d", task("d", { workerId: "", state: TaskState.PENDING, generation: 1n })],
  ]);
  const item = (taskId: string, generation: bigint) =>
    create(InventoryItemSchema, { taskId, generation, state: TaskState.RUNNING });
  const moved = new Map([
    ["a", 1n],
    ["c", 1n],
  ]);
  const r = reconcile(
    "w1",
    [item("a", 1n), item("b", 1n), item("c", 1n), item("d", 1n)],
    (id) => tasks.get(id),
    [],
    undefined,
    (id) => moved.get(id),
  );
  t.deepEqual(
    r.reclaim.map((d) => d.item.taskId),
    ["a"],
  );
  t.deepEqual(
    r.duplicates.map((d) => d.item.taskId),
    ["c"],
  );
  t.deepEqual(
    r.strangers.map((i) => i.taskId),
    ["b", "d"],
  );
  t.deepEqual(
    r.stop.map((i) => i.taskId),
    ["b", "c", "d"],
  );
  // Even a restarted agent (keepReturning) claims back only what it ran.
  const agent = reconcile(
    "w1",
    [item("a", 1n), item("b", 1n)],
    (id) => tasks.get(id),
    [],
    "its agent restarted",
    (id) => moved.get(id),
  );
  t.deepEqual(
    agent.reclaim.map((d) => d.item.taskId),
    ["a"],
  );
  t.deepEqual(
    agent.strangers.map((i) => i.taskId),
    ["b"],
  );
});
