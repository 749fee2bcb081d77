/**
 * Pull progress is thinned trailing-edge, on the worker and in the manager: progress inside
 * the window is held (the latest only) and sent or recorded when the window ends, so the last
 * figure before a stall reaches people; a held figure the task has moved past is dropped.
 * The manager's side runs on a FakeClock, the worker's on the hollow driver in-process.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import test from "ava";
import { createHollowDriver } from "../bench/hollow-driver.js";
import { TaskEventType, TaskState } from "../gen/cube/v1/task_pb.js";
import { AssignmentAction, type ProgressSchema } from "../gen/cube/v1/worker_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { TrailingThrottle } from "../lib/trailing-throttle.js";
import { startWorker } from "../worker/index.js";
import type { PullProgress } from "../worker/tasks/driver.js";
import { FakeClock } from "./fake-clock.js";
import { TEST_SANDBOXES, tempDir } from "./fixtures.js";
import { eventually, FakeWorker, type Harness, harness, reach, spec } from "./manager-harness.js";
import { TestManager } from "./test-manager.js";

// ---------------------------------------------------------------------------------------
// The helper on its own.

test("TrailingThrottle: first at once, the latest held one at the window's end, cancel drops it", (t) => {
  const clock = new FakeClock();
  const sent: string[] = [];
  const throttle = new TrailingThrottle<string>(250, (v) => sent.push(v), clock);
  throttle.offer("a");
  t.deepEqual(sent, ["a"], "the first is sent at once");
  clock.advance(100);
  throttle.offer("b");
  throttle.offer("c");
  t.true(throttle.holding);
  clock.advance(149);
  t.deepEqual(sent, ["a"], "held until the window ends");
  clock.advance(1);
  t.deepEqual(sent, ["a", "c"], "the latest held one, 250 ms after the last sent");
  t.false(throttle.holding);
  clock.advance(10);
  throttle.offer("d");
  throttle.offer("e", true);
  t.deepEqual(sent, ["a", "c", "e"], "`now` sends at once and supersedes the held one");
  clock.advance(100);
  throttle.offer("f");
  throttle.cancel();
  clock.advance(1000);
  t.deepEqual(sent, ["a", "c", "e"], "a cancelled one is never sent");
  t.is(clock.pending, 0);
  throttle.offer("g");
  t.deepEqual(sent, ["a", "c", "e", "g"], "after a quiet window, at once again");
});

// ---------------------------------------------------------------------------------------
// The manager: applyProgress on the injected clock.

const progress = (taskId: string, currentBytes: bigint, totalBytes = 100n) => ({
  case: "progress" as const,
  value: {
    taskId,
    generation: 1n,
    message: "Downloading",
    currentBytes,
    totalBytes,
  } satisfies MessageInitShape<typeof ProgressSchema>,
});

/**
 * A manager on a FakeClock with task `t` SCHEDULED on a worker that reports only when told,
 * which has reported 10% (recorded at once: the first figure).
 */
async function pulling(t: Parameters<typeof harness>[0]) {
  const clock = new FakeClock();
  const h = await harness(t, { clock });
  const w = new FakeWorker("w1", { auto: false });
  await w.connect(h.transport);
  await h.tasks.runTask({ id: "t", spec: spec() });
  await w.waitFor((a) => a.action === AssignmentAction.RUN && a.task?.id === "t");
  await reach(h, "t", TaskState.SCHEDULED);
  w.send(progress("t", 10n));
  await recorded(h, 1);
  return { clock, h, w };
}

/** The task's events, in order, as "PROGRESS message" / "STATE_CHANGED state", once durable. */
async function events(h: Harness): Promise<string[]> {
  await h.cp.committed();
  const { events } = await h.tasks.listTaskEvents({ taskId: "t" });
  return events
    .filter((e) => e.type === TaskEventType.PROGRESS || e.type === TaskEventType.STATE_CHANGED)
    .map((e) =>
      e.type === TaskEventType.PROGRESS
        ? `progress ${e.message}`
        : `state ${TaskState[e.task?.state ?? 0]}`,
    );
}

const progressOf = async (h: Harness) => (await events(h)).filter((e) => e.startsWith("progress "));

/** Waits until `count` progress events of task `t` are recorded. */
function recorded(h: Harness, count: number) {
  return eventually(async () => {
    const got = await progressOf(h);
    if (got.length < count) throw new Error(`${got.length} progress events: ${got}`);
  });
}

/** Waits until the manager holds progress of task `t` back (what the worker sent is in). */
function held(h: Harness) {
  return eventually(() => {
    if (!h.cp.tasks.get("t")?.progress?.holding) throw new Error("no progress held");
  });
}

test("manager: progress inside the window is recorded when it ends, with the latest figure", async (t) => {
  const { clock, h, w } = await pulling(t);
  t.deepEqual(await progressOf(h), ["progress Downloading 10%"]);
  clock.advance(100);
  w.sendBatch([progress("t", 20n), progress("t", 30n)]);
  await held(h);
  clock.advance(149);
  t.deepEqual(await progressOf(h), ["progress Downloading 10%"], "held until the window ends");
  clock.advance(1);
  t.deepEqual(
    await progressOf(h),
    ["progress Downloading 10%", "progress Downloading 30%"],
    "the last figure before the pause, 250 ms after the one before",
  );
  // The registry stalls: nothing more comes, and nothing more is recorded.
  clock.advance(5000);
  t.is((await progressOf(h)).length, 2);
});

for (const moved of [TaskState.RUNNING, TaskState.FAILED]) {
  test(`manager: a held figure is dropped once the task went ${TaskState[moved]}`, async (t) => {
    const { clock, h, w } = await pulling(t);
    w.send(progress("t", 20n));
    await held(h);
    clock.advance(250);
    t.deepEqual(await progressOf(h), ["progress Downloading 10%", "progress Downloading 20%"]);

    w.send(progress("t", 60n));
    await held(h);
    w.update("t", 1n, moved, moved === TaskState.FAILED ? { reason: "pull failed" } : {});
    await reach(h, "t", moved);
    clock.advance(1000);
    t.deepEqual(await events(h), [
      "state SCHEDULED",
      "progress Downloading 10%",
      "progress Downloading 20%",
      `state ${TaskState[moved]}`,
    ]);
  });
}

test("manager: the first figure and a finished one are recorded at once, the finished one superseding what was held", async (t) => {
  const { clock, h, w } = await pulling(t);
  t.deepEqual(await progressOf(h), ["progress Downloading 10%"]);
  clock.advance(50);
  w.send(progress("t", 50n));
  await held(h);
  w.send(progress("t", 100n));
  await recorded(h, 2);
  t.deepEqual(await progressOf(h), ["progress Downloading 10%", "progress Downloading 100%"]);
  t.false(h.cp.tasks.get("t")?.progress?.holding, "the finished figure replaced the held one");
  clock.advance(1000);
  t.is((await progressOf(h)).length, 2, "50% is never recorded after 100%");
});

// ---------------------------------------------------------------------------------------
// The worker: the task runner's throttle, on the hollow driver.

test("worker: the progress held back before a slow pause is sent; what is held when the pull ends is not", async (t) => {
  const manager = await TestManager.start();
  t.teardown(() => manager.close());
  const figure = (currentBytes: bigint): PullProgress => ({
    message: "Downloading",
    currentBytes,
    totalBytes: 100n,
  });
  const hollow = createHollowDriver();
  const worker = await startWorker({
    ...TEST_SANDBOXES,
    manager: manager.address,
    listen: "127.0.0.1:0",
    dataDir: await tempDir(t),
    driver: {
      ...hollow,
      async pull(_image, onProgress) {
        onProgress(figure(10n));
        onProgress(figure(20n));
        onProgress(figure(30n));
        // The registry pauses well past the window: 30% must reach the manager meanwhile.
        await new Promise((r) => setTimeout(r, 1000));
        onProgress(figure(90n));
        onProgress(figure(95n)); // held, then dropped: the pull ends at once
      },
    },
    logger: createLogger("worker-test", process.env.CUBE_LOG_LEVEL ?? "silent"),
  });
  t.teardown(() => worker.close());
  await manager.waitFor(() => manager.messages("inventory").length > 0, 5000, "the inventory");
  manager.run({ id: "p", spec: { image: "hollow/app:1" } });
  await manager.waitForUpdate(
    (u) => u.taskId === "p" && u.state === TaskState.RUNNING,
    5000,
    "RUNNING",
  );
  // Whatever was held must not come after RUNNING either.
  await new Promise((r) => setTimeout(r, 400));
  const seen = manager.received
    .filter(
      (r) =>
        (r.message.case === "progress" && r.message.value.taskId === "p") ||
        (r.message.case === "update" && r.message.value.taskId === "p"),
    )
    .map((r) =>
      r.message.case === "progress"
        ? `progress ${r.message.value.currentBytes}`
        : `update ${TaskState[(r.message.value as { state: TaskState }).state]}`,
    );
  t.deepEqual(seen, ["progress 10", "progress 30", "progress 90", "update RUNNING"]);
});
