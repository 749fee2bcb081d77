/**
 * Cordon, drain and uncordon (NodeService) through the manager harness, on a FakeClock.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import { JobStatus } from "../gen/cube/v1/job_pb.js";
import { JobService } from "../gen/cube/v1/job_service_pb.js";
import { DrainStatus, NodeService } from "../gen/cube/v1/node_service_pb.js";
import { DesiredState, type Task, TaskState } from "../gen/cube/v1/task_pb.js";
import { AssignmentAction } from "../gen/cube/v1/worker_service_pb.js";
import { FakeClock } from "./fake-clock.js";
import { eventually, FakeWorker, type Harness, harness, spec } from "./manager-harness.js";

interface Setup {
  h: Harness;
  clock: FakeClock;
  jobs: ReturnType<typeof createClient<typeof JobService>>;
  nodes: ReturnType<typeof createClient<typeof NodeService>>;
  workers: FakeWorker[];
}

async function setup(t: ExecutionContext, count = 2, options = {}): Promise<Setup> {
  const clock = new FakeClock();
  // Fake workers send no heartbeat on the fake clock: keep them alive for the test.
  const h = await harness(t, { clock, heartbeatTimeoutMs: 3_600_000 });
  const workers: FakeWorker[] = [];
  for (let i = 0; i < count; i++) {
    const w = new FakeWorker(`w${i + 1}`, options);
    await w.connect(h.transport);
    workers.push(w);
  }
  return {
    h,
    clock,
    jobs: createClient(JobService, h.transport),
    nodes: createClient(NodeService, h.transport),
    workers,
  };
}

const update = { maxParallel: 1, minHealthyTime: durationFromMs(1000) };

async function replicas(s: Setup, name = "web"): Promise<Task[]> {
  const { tasks } = await s.jobs.getJob({ name });
  return tasks.filter((x) => x.desiredState === DesiredState.RUNNING);
}

/** Advances the fake clock in steps until `check` passes (reconciles run between steps). */
async function until(s: Setup, check: () => Promise<boolean>, stepMs = 250, steps = 200) {
  for (let i = 0; i < steps; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
    s.clock.advance(stepMs);
  }
  throw new Error("condition never held");
}

test("cordon: no new task goes to the worker, and the pending reason says so; uncordon undoes it", async (t) => {
  const s = await setup(t, 1);
  const { node } = await s.nodes.cordonNode({ name: "w1" });
  t.true(node?.cordoned);
  const { task } = await s.h.tasks.runTask({ spec: spec() });
  t.is(task?.state, TaskState.PENDING);
  t.is(task?.reason, "0/1 workers fit: 1 is cordoned");
  await s.nodes.uncordonNode({ name: "w1" });
  await eventually(async () => {
    const { task: x } = await s.h.tasks.getTask({ id: task?.id ?? "" });
    if (x?.state !== TaskState.RUNNING) throw new Error(`${x?.state}`);
  });
  const missing = await t.throwsAsync(s.nodes.cordonNode({ name: "nope" }));
  t.is(ConnectError.from(missing).code, Code.NotFound);
  t.regex(ConnectError.from(missing).rawMessage, /^name: worker "nope" not found/);
});

test("drain: replicas move start-first (replacement healthy before the old one stops), other tasks move, the drain completes", async (t) => {
  const s = await setup(t, 2);
  await s.jobs.applyJob({
    spec: { name: "web", template: spec(), count: 2, update },
  });
  await until(
    s,
    async () => (await s.jobs.getJob({ name: "web" })).job?.status === JobStatus.RUNNING,
  );
  const { task: plain } = await s.h.tasks.runTask({ spec: spec({ name: "plain" }) });
  await eventually(async () => {
    const { task } = await s.h.tasks.getTask({ id: plain?.id ?? "" });
    if (task?.state !== TaskState.RUNNING) throw new Error("not running");
  });
  const { task: placedPlain } = await s.h.tasks.getTask({ id: plain?.id ?? "" });
  // Drain the worker that holds the plain task.
  const target = placedPlain?.workerId ?? "";
  const other = target === "w1" ? "w2" : "w1";
  const onTarget = (await replicas(s)).filter((x) => x.workerId === target);
  t.is(onTarget.length, 1);
  const { node } = await s.nodes.drainNode({ name: target, deadline: durationFromMs(60_000) });
  t.is(node?.drain?.status, DrainStatus.DRAINING);
  t.true(node?.cordoned);
  t.is(node?.drain?.tasksTotal, 2);
  // The plain task moves; the replica's replacement starts first, the old one waits.
  await eventually(async () => {
    const { task } = await s.h.tasks.getTask({ id: plain?.id ?? "" });
    if (task?.workerId !== other || task.state !== TaskState.RUNNING) throw new Error("not moved");
  });
  await eventually(async () => {
    if ((await replicas(s)).length !== 3) {
      const { job, tasks } = await s.jobs.getJob({ name: "web" });
      throw new Error(
        `no replacement yet: ${job?.statusReason} ${JSON.stringify(tasks.map((x) => [x.id, x.workerId, x.state, x.desiredState]))}`,
      );
    }
  });
  const during = await replicas(s);
  t.true(
    during.some((x) => x.id === onTarget[0]?.id),
    "the old replica runs until its replacement is healthy",
  );
  await until(s, async () => {
    const { nodes } = await s.nodes.listNodes({});
    return nodes.find((n) => n.worker?.id === target)?.drain?.status === DrainStatus.COMPLETE;
  });
  const after = await replicas(s);
  t.is(after.length, 2);
  t.true(after.every((x) => x.workerId === other));
  const { nodes } = await s.nodes.listNodes({});
  const drained = nodes.find((n) => n.worker?.id === target);
  t.is(drained?.drain?.tasksLeft, 0);
  t.true(drained?.cordoned);
});

test("drain deadline: what is left is stopped (and replaced where it can be)", async (t) => {
  // Workers that never report RUNNING: replacements never get healthy.
  const s = await setup(t, 1);
  await s.jobs.applyJob({ spec: { name: "web", template: spec(), count: 1, update } });
  await until(s, async () => (await replicas(s))[0]?.state === TaskState.RUNNING);
  const lazy = new FakeWorker("w2", { auto: false });
  await lazy.connect(s.h.transport);
  await s.nodes.drainNode({ name: "w1", deadline: durationFromMs(5000) });
  await eventually(async () => {
    if ((await replicas(s)).length !== 2) throw new Error("no replacement yet");
  });
  await until(s, async () => {
    const { nodes } = await s.nodes.listNodes({});
    const d = nodes.find((n) => n.worker?.id === "w1")?.drain;
    return d?.status === DrainStatus.DEADLINE_REACHED && d.tasksLeft === 0;
  });
  const left = await replicas(s);
  t.is(left.length, 1);
  t.is(left[0]?.workerId, "w2");
});

test("uncordon cancels a drain under way; a restarted manager resumes a drain", async (t) => {
  const s = await setup(t, 1);
  await s.jobs.applyJob({ spec: { name: "web", template: spec(), count: 1, update } });
  await until(s, async () => (await replicas(s))[0]?.state === TaskState.RUNNING);
  // Nowhere to go: the drain waits.
  await s.nodes.drainNode({ name: "w1", deadline: durationFromMs(60_000) });
  const { node } = await s.nodes.uncordonNode({ name: "w1" });
  t.is(node?.drain?.status, DrainStatus.CANCELLED);
  t.false(node?.cordoned);

  await s.nodes.drainNode({ name: "w1", deadline: durationFromMs(60_000) });
  const h2 = await s.h.restart();
  const nodes = createClient(NodeService, h2.transport);
  const { nodes: list } = await nodes.listNodes({});
  const w1 = list.find((n) => n.worker?.id === "w1");
  t.true(w1?.cordoned);
  t.is(w1?.drain?.status, DrainStatus.DRAINING);
  // A worker joins: the resumed drain moves the replica there.
  for (const w of s.workers) w.disconnect();
  const w2 = new FakeWorker("w2");
  await w2.connect(h2.transport);
  await s.workers[0]?.connect(h2.transport, [
    ...[...(s.workers[0]?.running ?? [])].map(([taskId, generation]) => ({
      taskId,
      generation,
      state: TaskState.RUNNING,
      containerId: `c-${taskId}`,
    })),
  ]);
  const s2: Setup = { ...s, h: h2, nodes, jobs: createClient(JobService, h2.transport) };
  await until(s2, async () => {
    const { nodes: l } = await nodes.listNodes({});
    return l.find((n) => n.worker?.id === "w1")?.drain?.status === DrainStatus.COMPLETE;
  });
  const r = await replicas(s2);
  t.is(r.length, 1);
  t.is(r[0]?.workerId, "w2");
});

test("uncordon after a drain reached its deadline: the record is cleared, replicas placed there stay", async (t) => {
  const s = await setup(t, 1);
  const { task: plain } = await s.h.tasks.runTask({ spec: spec({ name: "plain" }) });
  await eventually(async () => {
    const { task } = await s.h.tasks.getTask({ id: plain?.id ?? "" });
    if (task?.state !== TaskState.RUNNING) throw new Error("not running");
  });
  // Nowhere to go: at the deadline the plain task is stopped (PENDING), the drain ends.
  await s.nodes.drainNode({ name: "w1", deadline: durationFromMs(3000) });
  await until(s, async () => {
    const { nodes } = await s.nodes.listNodes({});
    const d = nodes.find((n) => n.worker?.id === "w1")?.drain;
    return d?.status === DrainStatus.DEADLINE_REACHED && d.tasksLeft === 0;
  });
  const { node } = await s.nodes.uncordonNode({ name: "w1" });
  t.false(node?.cordoned);
  t.is(node?.drain, undefined, "an ended drain means nothing once the worker takes tasks");
  await s.jobs.applyJob({ spec: { name: "web", template: spec(), count: 3, update } });
  await until(
    s,
    async () => (await s.jobs.getJob({ name: "web" })).job?.status === JobStatus.RUNNING,
  );
  // A while longer: nothing placed on w1 is evicted, nothing more is made.
  for (let i = 0; i < 20; i++) {
    s.clock.advance(250);
    await new Promise((r) => setTimeout(r, 10));
  }
  const { tasks } = await s.jobs.getJob({ name: "web" });
  t.is(tasks.length, 3, JSON.stringify(tasks.map((x) => [x.id, x.state, x.desiredState])));
  t.true(tasks.every((x) => x.desiredState === DesiredState.RUNNING && x.workerId === "w1"));
  // A restarted manager does not take the worker for one being drained either.
  const h2 = await s.h.restart();
  const { nodes } = await createClient(NodeService, h2.transport).listNodes({});
  t.is(nodes.find((n) => n.worker?.id === "w1")?.drain, undefined);
});

test("drain moves plain tasks one by one: the next only once the last is ready elsewhere; the deadline moves the rest at once", async (t) => {
  const s = await setup(t, 1);
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    const { task } = await s.h.tasks.runTask({ spec: spec({ name: `plain-${i}` }) });
    ids.push(task?.id ?? "");
  }
  await eventually(async () => {
    const { tasks } = await s.h.tasks.listTasks({});
    if (tasks.filter((x) => x.state === TaskState.RUNNING).length !== 4) throw new Error("not yet");
  });
  // w2 reports nothing by itself: each move stays SCHEDULED until the test says RUNNING.
  const w2 = new FakeWorker("w2", { auto: false });
  await w2.connect(s.h.transport);
  const runs = () => w2.assignments.filter((a) => a.action === AssignmentAction.RUN);
  await s.nodes.drainNode({ name: "w1", deadline: durationFromMs(60_000) });
  for (let moved = 1; moved <= 2; moved++) {
    await eventually(async () => {
      if (runs().length !== moved) throw new Error(`${runs().length} moves, want ${moved}`);
    });
    await new Promise((r) => setTimeout(r, 50));
    t.is(runs().length, moved, "no second move while the first is not ready");
    const { nodes } = await s.nodes.listNodes({});
    t.is(nodes.find((n) => n.worker?.id === "w1")?.drain?.tasksLeft, 4 - moved);
    const a = runs()[moved - 1];
    w2.update(a?.task?.id ?? "", a?.task?.generation ?? 0n, TaskState.RUNNING);
  }
  // The third never gets RUNNING: at the deadline the fourth moves without waiting for it.
  await eventually(async () => {
    if (runs().length !== 3) throw new Error(`${runs().length} moves`);
  });
  await until(s, async () => runs().length === 4, 1000);
  const { nodes } = await s.nodes.listNodes({});
  const d = nodes.find((n) => n.worker?.id === "w1")?.drain;
  t.is(d?.status, DrainStatus.DEADLINE_REACHED);
  t.is(d?.tasksLeft, 0);
  t.deepEqual(new Set(runs().map((a) => a.task?.id)), new Set(ids));
});
