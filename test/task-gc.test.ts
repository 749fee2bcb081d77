/**
 * Garbage collection of ended tasks (manager/rules/task-gc.ts): the pure plan as named table
 * cases, then a manager on a FakeClock and LevelDB: an ended task is removed after
 * --task-gc-after with a DELETED event, is NOT_FOUND after, and stays gone across a restart;
 * a task that may still run is kept.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test from "ava";
import { JobService } from "../gen/cube/v1/job_service_pb.js";
import {
  DesiredState,
  type TaskEvent,
  TaskEventType,
  TaskSchema,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import { AssignmentAction } from "../gen/cube/v1/worker_service_pb.js";
import { isFinished } from "../lib/task-state.js";
import { JOB_LABEL, jobOf } from "../manager/core/job-table.js";
import { type GcTask, planTaskGc, TASK_GC_INTERVAL_MS } from "../manager/rules/task-gc.js";
import { LevelStore } from "../manager/store/level-store.js";
import { FakeClock } from "./fake-clock.js";
import { tempDir } from "./fixtures.js";
import { eventually, FakeWorker, type Harness, harness, reach, spec } from "./manager-harness.js";

const HOUR = 3600_000;
const NOW = 100 * HOUR;
const POLICY = { afterMs: 4 * HOUR, jobHistory: 2, maxPerSweep: 1000 };

interface Row {
  state?: TaskState;
  /** Hours since it ended. */
  endedHoursAgo?: number;
  job?: string;
  restartPending?: boolean;
  member?: boolean;
}

function gcTask(id: string, n: number, row: Row): GcTask {
  const ended = row.endedHoursAgo;
  return {
    task: create(TaskSchema, {
      id,
      state: row.state ?? TaskState.COMPLETED,
      finishedAt: ended === undefined ? undefined : timestampFromMs(NOW - ended * HOUR),
      spec: { image: "x", labels: row.job ? { [JOB_LABEL]: row.job } : {} },
    }),
    createdRevision: BigInt(n),
    restartPending: row.restartPending ?? false,
    member: row.member ?? false,
  };
}

const CASES: Record<string, { rows: Record<string, Row>; want: string[] }> = {
  "a task that ended longer ago than the threshold goes": {
    rows: { old: { endedHoursAgo: 5 }, recent: { endedHoursAgo: 1 } },
    want: ["old"],
  },
  "FAILED goes like COMPLETED": {
    rows: { f: { state: TaskState.FAILED, endedHoursAgo: 5 } },
    want: ["f"],
  },
  "a task not ended is kept, however old": {
    rows: {
      running: { state: TaskState.RUNNING },
      pending: { state: TaskState.PENDING },
      unknown: { state: TaskState.UNKNOWN },
    },
    want: [],
  },
  "a task whose restart waits out its back-off is kept": {
    rows: { restarting: { state: TaskState.FAILED, endedHoursAgo: 5, restartPending: true } },
    want: [],
  },
  "a job's replica is kept while it is one (a member), ended or not": {
    rows: { replica: { job: "web", endedHoursAgo: 50, member: true } },
    want: [],
  },
  "a job keeps its newest ended replicas, however old; past that they go at once": {
    rows: {
      r1: { job: "web", endedHoursAgo: 0 },
      r2: { job: "web", endedHoursAgo: 0 },
      r3: { job: "web", endedHoursAgo: 0 },
      r4: { job: "web", endedHoursAgo: 0 },
      other: { job: "api", endedHoursAgo: 0 },
    },
    want: ["r1", "r2"],
  },
  "a job's kept replicas still go by age": {
    rows: { r1: { job: "web", endedHoursAgo: 5 }, r2: { job: "web", endedHoursAgo: 1 } },
    want: ["r1"],
  },
  "threshold 0 keeps by age, but not past a job's history": {
    rows: {
      old: { endedHoursAgo: 500 },
      r1: { job: "web" },
      r2: { job: "web" },
      r3: { job: "web" },
    },
    want: ["r1"],
  },
};

for (const [name, { rows, want }] of Object.entries(CASES)) {
  test(`plan: ${name}`, (t) => {
    const tasks = Object.entries(rows).map(([id, row], i) => gcTask(id, i + 1, row));
    const policy = name.startsWith("threshold 0") ? { ...POLICY, afterMs: 0 } : POLICY;
    t.deepEqual(
      planTaskGc(tasks, NOW, policy).map((d) => d.id),
      want,
    );
  });
}

test("plan: oldest first, at most maxPerSweep, each with its reason", (t) => {
  const tasks = [3, 1, 2].map((n) => gcTask(`t${n}`, n, { endedHoursAgo: 5 }));
  const plan = planTaskGc(tasks, NOW, { ...POLICY, maxPerSweep: 2 });
  t.deepEqual(
    plan.map((d) => d.id),
    ["t1", "t2"],
  );
  t.is(plan[0]?.why, "garbage collected: ended 5h ago (--task-gc-after 4h)");
  const history = planTaskGc(
    [1, 2, 3].map((n) => gcTask(`r${n}`, n, { job: "web" })),
    NOW,
    POLICY,
  );
  t.is(history[0]?.why, "garbage collected: job web keeps its 2 newest ended replicas");
});

/** Task `id` run on the connected worker, then stopped: COMPLETED. */
async function completed(h: Harness, id: string): Promise<void> {
  await h.tasks.runTask({ id, spec: spec() });
  await reach(h, id, TaskState.RUNNING, 1n);
  await h.tasks.stopTask({ id });
  await reach(h, id, TaskState.COMPLETED);
}

test("an ended task is removed after --task-gc-after: a DELETED event, NOT_FOUND, and gone after a restart; a running one stays", async (t) => {
  const store = await LevelStore.open(await tempDir(t));
  t.teardown(() => store.close());
  const clock = new FakeClock();
  const h = await harness(t, { clock, store, taskGcAfterMs: HOUR, heartbeatTimeoutMs: 10 * HOUR });
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  await completed(h, "done");
  await h.tasks.runTask({ id: "up", spec: spec() });
  await reach(h, "up", TaskState.RUNNING, 1n);
  t.is(h.cp.tasks.get("done")?.task.desiredState, DesiredState.STOPPED);

  const { revision } = await h.tasks.listTasks({});
  const deleted = (async () => {
    for await (const { event } of h.tasks.watchTasks({ afterRevision: revision })) {
      if (event?.type === TaskEventType.DELETED) return event;
    }
    return undefined;
  })();
  // Not yet: it ended less than an hour ago at the sweep.
  clock.advance(TASK_GC_INTERVAL_MS);
  await h.cp.committed();
  t.truthy(h.cp.tasks.get("done"), "kept within the hour");
  clock.advance(HOUR);
  const event = (await deleted) as TaskEvent;
  t.is(event.task?.id, "done");
  t.is(event.task?.state, TaskState.COMPLETED, "the DELETED event carries its last snapshot");
  t.regex(event.message, /^garbage collected: ended 1h\d*m?\d*s? ago \(--task-gc-after 1h\)$/);
  const missing = await h.tasks.getTask({ id: "done" }).catch((e) => ConnectError.from(e));
  t.is((missing as ConnectError).code, Code.NotFound);
  // The answer says why an id once seen may be gone.
  t.is(
    (missing as ConnectError).rawMessage,
    'task "done" not found (ended tasks are removed 1h after they end)',
  );
  t.deepEqual(
    (await h.tasks.listTasks({})).tasks.map((x) => x.id),
    ["up"],
  );
  t.is(h.cp.metrics.tasks.get(TaskState.COMPLETED), 0, "the gauge forgets it");

  await h.cp.committed();
  const after = await h.restart();
  t.is(after.cp.tasks.get("done"), undefined, "its record is gone from the store");
  t.is(after.cp.tasks.get("up")?.task.state, TaskState.RUNNING);
});

test("removing an ended task sends its worker a STOP, which removes the container kept since it ended", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock, taskGcAfterMs: HOUR, heartbeatTimeoutMs: 10 * HOUR });
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  await h.tasks.runTask({ id: "exited", spec: spec() });
  await reach(h, "exited", TaskState.RUNNING, 1n);
  w1.update("exited", 1n, TaskState.COMPLETED, { exitCode: 0, reason: "exit code 0" });
  await reach(h, "exited", TaskState.COMPLETED);
  const stops = () =>
    w1.assignments.filter((a) => a.task?.id === "exited" && a.action === AssignmentAction.STOP);
  t.is(stops().length, 0, "an ended task's container stays (cube logs reads it)");
  clock.advance(HOUR + TASK_GC_INTERVAL_MS);
  const stop = await w1.waitFor(
    (a) => a.task?.id === "exited" && a.action === AssignmentAction.STOP,
  );
  t.is(stop.task?.generation, 1n);
  t.is(h.cp.tasks.get("exited"), undefined);
  // Acked (as not held, or held and removed): nothing lingers in the worker's bookkeeping.
  await eventually(() => {
    if (h.cp.workers.get("w1")?.unacked.has("exited")) throw new Error("still unacked");
  });
});

test("a crash-looping job keeps its 10 newest ended replicas; the sweep removes the rest", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock, heartbeatTimeoutMs: 10 * HOUR });
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  const jobs = createClient(JobService, h.transport);
  await jobs.applyJob({ spec: { name: "crash", template: spec(), count: 1 } });
  const ofJob = () => h.cp.tasks.all().filter((e) => jobOf(e.task)?.name === "crash");
  const failed: string[] = [];
  for (let i = 0; i < 14; i++) {
    // The job waits out its back-off before each replacement: the clock moves in steps (and
    // the sweep runs every minute of it meanwhile).
    let replica = ofJob().find((e) => e.task.state === TaskState.RUNNING)?.task;
    for (let step = 0; !replica && step < 2000; step++) {
      await new Promise((r) => setTimeout(r, 2));
      clock.advance(500);
      replica = ofJob().find((e) => e.task.state === TaskState.RUNNING)?.task;
    }
    if (!replica) throw new Error(`no replica RUNNING after failure ${i}`);
    w1.update(replica.id, replica.generation, TaskState.FAILED, { reason: "exit code 1" });
    const id = replica.id;
    await eventually(() => {
      if (h.cp.tasks.get(id)?.task.state !== TaskState.FAILED) throw new Error("not yet");
    });
    failed.push(id);
  }
  clock.advance(TASK_GC_INTERVAL_MS);
  await h.cp.committed();
  // The last to fail may still be a replica (its replacement waits out the back-off): kept
  // as one, and not counted in the history.
  const retired = failed.filter((id) => h.cp.tasks.get(id)?.group === undefined);
  const kept = ofJob()
    .filter((e) => isFinished(e.task.state) && e.group === undefined)
    .map((e) => e.task.id);
  t.true(failed.length - retired.length <= 1, "at most the last failed is still a replica");
  t.deepEqual(
    kept,
    failed.filter((id) => !h.cp.tasks.get(id)?.group).slice(-10),
    "the 10 newest ended replicas are kept",
  );
  t.is(kept.length, 10);
  t.is(
    failed.filter((id) => h.cp.tasks.get(id) === undefined).length,
    failed.length - 10 - (failed.length - retired.length),
    "the rest are removed",
  );
  const { tasks } = await jobs.getJob({ name: "crash" });
  t.true(
    tasks.every((x) => h.cp.tasks.get(x.id) !== undefined),
    "the job names no removed task",
  );
});

test("with --task-gc-after 0 nothing ends by age, and NOT_FOUND has no word about removals", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock, taskGcAfterMs: 0 });
  const w = new FakeWorker("w1");
  await w.connect(h.transport);
  await completed(h, "done");
  clock.advance(365 * 24 * 3_600_000);
  clock.advance(TASK_GC_INTERVAL_MS);
  await h.cp.committed();
  t.is((await h.tasks.getTask({ id: "done" })).task?.state, TaskState.COMPLETED);
  const missing = await h.tasks.getTask({ id: "nope" }).catch((e) => ConnectError.from(e));
  t.is((missing as ConnectError).rawMessage, 'task "nope" not found');
});
