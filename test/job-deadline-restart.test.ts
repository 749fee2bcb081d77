/**
 * A job's healthy deadline runs only while a manager watches: a manager restart, or a stall
 * of its own (SIGSTOP), must not fail a deployment whose replica's news is still on its way.
 * The manager harness (a control plane over a store kept across the restart), a FakeClock,
 * and a scripted worker that reports only what the test says.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import { DeploymentStatus } from "../gen/cube/v1/job_pb.js";
import { JobService } from "../gen/cube/v1/job_service_pb.js";
import { RestartMode, type Task, TaskState } from "../gen/cube/v1/task_pb.js";
import { AssignmentAction } from "../gen/cube/v1/worker_service_pb.js";
import { FakeClock } from "./fake-clock.js";
import { eventually, FakeWorker, harness, reach, spec } from "./manager-harness.js";

const DEADLINE_MS = 30_000;

const job = {
  name: "web",
  template: spec(),
  count: 1,
  update: {
    maxParallel: 1,
    minHealthyTime: durationFromMs(0),
    healthyDeadline: durationFromMs(DEADLINE_MS),
  },
};

/** Waits until the job's deployment is SUCCESSFUL, running due timers as it goes. */
async function deployed(clock: FakeClock, jobs: Client<typeof JobService>): Promise<void> {
  await eventually(async () => {
    clock.advance(0);
    const d = (await jobs.getJob({ name: "web" })).job?.deployment;
    if (d?.status !== DeploymentStatus.SUCCESSFUL) {
      throw new Error(`deployment ${DeploymentStatus[d?.status ?? 0]}: ${d?.statusReason}`);
    }
  });
}

test("a restart between a replica's placement and its RUNNING gives it the whole deadline again", async (t) => {
  const clock = new FakeClock();
  // Slow to give workers up: this test is about the deadline, not about liveness.
  const options = { clock, heartbeatTimeoutMs: 3_600_000, startupGraceMs: 3_600_000 };
  const h = await harness(t, options);
  const w = new FakeWorker("w1", { auto: false });
  await w.connect(h.transport);
  await createClient(JobService, h.transport).applyJob({ spec: job });
  const run = await w.waitFor((a) => a.action === AssignmentAction.RUN);
  const task = run.task as Task;
  // Pulling: nothing reported yet when the manager goes away, 20 s into the deadline.
  clock.advance(20_000);
  const h2 = await h.restart();
  const jobs = createClient(JobService, h2.transport);
  w.disconnect();
  // The manager is back; its worker reconnects 15 s later: 35 s since the placement.
  clock.advance(15_000);
  const before = (await jobs.getJob({ name: "web" })).job?.deployment;
  t.is(before?.status, DeploymentStatus.RUNNING, `deployment ${before?.statusReason}`);
  await w.connect(h2.transport, [
    { taskId: task.id, generation: task.generation, state: TaskState.RUNNING, containerId: "c1" },
  ]);
  // Its RUNNING, kept in its outbox while the manager was away, goes up now.
  w.update(task.id, task.generation, TaskState.RUNNING, { containerId: "c1" });
  await deployed(clock, jobs);
  t.pass();
});

test("the deadline still fails a replica not healthy in time while the manager watches", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock, heartbeatTimeoutMs: 3_600_000 });
  const w = new FakeWorker("w1", { auto: false });
  await w.connect(h.transport);
  const jobs = createClient(JobService, h.transport);
  await jobs.applyJob({ spec: job });
  await w.waitFor((a) => a.action === AssignmentAction.RUN);
  clock.advance(DEADLINE_MS + 1);
  await eventually(async () => {
    const d = (await jobs.getJob({ name: "web" })).job?.deployment;
    if (d?.status !== DeploymentStatus.FAILED) throw new Error("not failed yet");
  });
  const d = (await jobs.getJob({ name: "web" })).job?.deployment;
  t.regex(d?.statusReason ?? "", /not healthy within 30s/);
});

test("a stall of the manager's own (a SIGSTOP past the deadline) does not fail the deployment", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock, heartbeatTimeoutMs: 3_600_000 });
  const w = new FakeWorker("w1", { auto: false });
  await w.connect(h.transport);
  const jobs = createClient(JobService, h.transport);
  await jobs.applyJob({ spec: job });
  const run = await w.waitFor((a) => a.action === AssignmentAction.RUN);
  const task = run.task as Task;
  clock.advance(10_000);
  // Frozen 25 s: the deadline ran out while nobody watched; the timers that fell due run late.
  clock.stall(25_000);
  clock.advance(0);
  t.is(h.cp.workers.loop.stalls, 1);
  w.update(task.id, task.generation, TaskState.RUNNING, { containerId: "c1" });
  await deployed(clock, jobs);
  t.pass();
});

/**
 * A replica ready during the deployment, then restarted after a crash and slow to come back
 * (a pull, say), 40 s past its new placement: the job is RUNNING again, the deployment not
 * FAILED, because the replica already showed the version healthy. `restart` puts a manager
 * restart between the crash and the 40 s.
 */
async function provenReplica(t: ExecutionContext, restart: boolean) {
  const clock = new FakeClock();
  const options = { clock, heartbeatTimeoutMs: 3_600_000, startupGraceMs: 3_600_000 };
  const h = await harness(t, options);
  const w = new FakeWorker("w1", { auto: false });
  await w.connect(h.transport);
  // min_healthy_time outlasts the test: the deployment runs all along.
  // Restarted in place on failure: the same task, a new generation.
  const slow = {
    ...job,
    template: spec({ restartPolicy: { mode: RestartMode.ON_FAILURE } }),
    update: { ...job.update, minHealthyTime: durationFromMs(3_600_000) },
  };
  await createClient(JobService, h.transport).applyJob({ spec: slow });
  const run = await w.waitFor((a) => a.action === AssignmentAction.RUN);
  const task = run.task as Task;
  w.update(task.id, task.generation, TaskState.RUNNING, { containerId: "c1" });
  await reach(h, task.id, TaskState.RUNNING);
  clock.advance(5_000);
  w.update(task.id, task.generation, TaskState.FAILED, { exitCode: 1, reason: "exit code 1" });
  await reach(h, task.id, TaskState.FAILED);
  let current = h;
  if (restart) {
    current = await h.restart();
    w.disconnect();
    await w.connect(current.transport, [
      { taskId: task.id, generation: task.generation, state: TaskState.FAILED, containerId: "c1" },
    ]);
  }
  const jobs = createClient(JobService, current.transport);
  // The restart's back-off, then its placement; the worker never reports it RUNNING.
  for (let i = 0; i < 10; i++) clock.advance(5_000);
  await eventually(async () => {
    clock.advance(0);
    const { task: now } = await current.tasks.getTask({ id: task.id });
    if ((now?.generation ?? 0n) <= task.generation) throw new Error("not restarted yet");
  });
  clock.advance(DEADLINE_MS + 10_000);
  // Timers due run; a failure would be recorded by now.
  await new Promise((resolve) => setTimeout(resolve, 200));
  clock.advance(0);
  const d = (await jobs.getJob({ name: "web" })).job?.deployment;
  t.is(d?.status, DeploymentStatus.RUNNING, `deployment ${d?.statusReason}`);
}

test("a replica ready in the deployment, restarted and slow to return, does not fail it", (t) =>
  provenReplica(t, false));

test("a manager restart keeps what replicas showed: a proven replica slow to return does not fail the deployment", (t) =>
  provenReplica(t, true));
