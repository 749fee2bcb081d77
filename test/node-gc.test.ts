/**
 * Garbage collection of workers DOWN for good (manager/rules/node-gc.ts, `--node-gc-after`):
 * the pure plan as named table cases; then a manager on a FakeClock: a worker DOWN past the
 * threshold leaves ListNodes, WatchWorkers (removed, once) and the LevelDB store, one short of
 * it stays, one that came back is not removed on its old down_since, and down_since survives a
 * manager restart (a store without it counts from the new manager's DOWN); `cube nodes`
 * shows how long a worker has been DOWN.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import pc from "picocolors";
import { WORKER_HEAD, workerRow } from "../cli/format-worker.js";
import { NodeService } from "../gen/cube/v1/node_service_pb.js";
import { WorkerSchema, WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { OptionsError, resolveOptions } from "../manager/core/options.js";
import { type GcWorker, planNodeGc } from "../manager/rules/node-gc.js";
import { TASK_GC_INTERVAL_MS } from "../manager/rules/task-gc.js";
import { LevelStore } from "../manager/store/level-store.js";
import { MemoryStore } from "../manager/store/memory-store.js";
import { FakeClock } from "./fake-clock.js";
import { tempDir } from "./fixtures.js";
import { eventually, FakeWorker, type Harness, harness, watchWorkers } from "./manager-harness.js";

const HOUR = 3600_000;
const MINUTE = 60_000;
const NOW = 100 * HOUR;
const POLICY = { afterMs: 24 * HOUR, maxPerSweep: 100 };

interface Row {
  status?: WorkerStatus;
  /** Hours since it went DOWN; undefined: not said. */
  downHoursAgo?: number;
  tasks?: number;
}

function gcWorker(id: string, row: Row): GcWorker {
  return {
    id,
    status: row.status ?? WorkerStatus.DOWN,
    downSinceMs: row.downHoursAgo === undefined ? undefined : NOW - row.downHoursAgo * HOUR,
    tasks: row.tasks ?? 0,
  };
}

const CASES: Record<
  string,
  { rows: Record<string, Row>; want: string[]; policy?: Partial<typeof POLICY> }
> = {
  "a worker DOWN for the threshold or longer goes; one DOWN for less stays": {
    rows: { old: { downHoursAgo: 30 }, exact: { downHoursAgo: 24 }, recent: { downHoursAgo: 23 } },
    want: ["old", "exact"],
  },
  "a DOWN worker still holding a task stays, however long": {
    rows: { holding: { downHoursAgo: 500, tasks: 1 } },
    want: [],
  },
  "READY and DISCONNECTED workers stay, whatever their down_since says": {
    rows: {
      ready: { status: WorkerStatus.READY, downHoursAgo: 500 },
      disconnected: { status: WorkerStatus.DISCONNECTED, downHoursAgo: 500 },
    },
    want: [],
  },
  "a DOWN worker whose down_since is not known stays": {
    rows: { unknown: {} },
    want: [],
  },
  "threshold 0 keeps every worker": {
    rows: { ancient: { downHoursAgo: 10_000 } },
    want: [],
    policy: { afterMs: 0 },
  },
  "longest DOWN first, at most maxPerSweep": {
    rows: {
      a: { downHoursAgo: 25 },
      b: { downHoursAgo: 90 },
      c: { downHoursAgo: 48 },
      d: { downHoursAgo: 30 },
    },
    want: ["b", "c"],
    policy: { maxPerSweep: 2 },
  },
};

for (const [name, { rows, want, policy }] of Object.entries(CASES)) {
  test(`plan: ${name}`, (t) => {
    const workers = Object.entries(rows).map(([id, row]) => gcWorker(id, row));
    t.deepEqual(
      planNodeGc(workers, NOW, { ...POLICY, ...policy }).map((d) => d.id),
      want,
    );
  });
}

test("plan: the reason names how long it was DOWN and the threshold", (t) => {
  const [decision] = planNodeGc([gcWorker("w", { downHoursAgo: 26 })], NOW, POLICY);
  t.is(decision?.why, "garbage collected: DOWN for 26h (--node-gc-after 24h)");
});

test("nodeGcAfterMs: 24 h unless told, 0 allowed, a negative one refused as the other durations are", (t) => {
  t.is(resolveOptions({}).nodeGcAfterMs, 24 * HOUR);
  t.is(resolveOptions({ nodeGcAfterMs: 0 }).nodeGcAfterMs, 0);
  const error = t.throws(() => resolveOptions({ nodeGcAfterMs: -1 }), {
    instanceOf: OptionsError,
  });
  t.is(error?.message, "nodeGcAfterMs: -1 is not a non-negative number");
  t.is(
    (error as OptionsError).describe((o) => (o === "nodeGcAfterMs" ? "--node-gc-after" : o)),
    "--node-gc-after: -1 is not a non-negative number",
  );
});

test("cube nodes: a DOWN worker reads how long it has been DOWN", (t) => {
  const now = 1_800_000_000_000;
  const col = WORKER_HEAD.indexOf("STATUS");
  const status = (init: MessageInitShape<typeof WorkerSchema>) =>
    workerRow(create(WorkerSchema, { name: "w", ...init }), {
      now,
      colors: pc.createColors(false),
    })[col];
  t.is(
    status({ status: WorkerStatus.DOWN, downSince: timestampFromMs(now - 3 * HOUR) }),
    "DOWN 3h",
  );
  t.is(status({ status: WorkerStatus.DOWN }), "DOWN", "a manager that does not say");
  t.is(status({ status: WorkerStatus.READY }), "READY");
});

/** Options of the managers below: heartbeats never time out within the hours they advance. */
const OPTIONS = { nodeGcAfterMs: HOUR, heartbeatTimeoutMs: 100 * HOUR };

/** `w` ends its stream and is DOWN once its down grace ran out; returns its down_since. */
async function goDown(h: Harness, clock: FakeClock, w: FakeWorker): Promise<number> {
  w.disconnect();
  await eventually(() => {
    if (h.cp.workers.get(w.id)?.status !== WorkerStatus.DISCONNECTED) throw new Error("not yet");
  });
  clock.advance(h.cp.options.downGraceMs);
  const entry = h.cp.workers.get(w.id);
  if (entry?.status !== WorkerStatus.DOWN) throw new Error(`${w.id} not DOWN`);
  return downSince(h, w.id) as number;
}

/** The down_since of worker `id` as its record holds it, in ms. */
function downSince(h: Harness, id: string): number | undefined {
  const since = h.cp.workers.get(id)?.record.downSince;
  return since ? timestampMs(since) : undefined;
}

/** Moves the clock to `at` (the sweeps on the way run), then waits for what they wrote. */
async function advanceTo(h: Harness, clock: FakeClock, at: number): Promise<void> {
  clock.advance(at - clock.now());
  await h.cp.committed();
}

async function listed(h: Harness): Promise<string[]> {
  const { nodes } = await createClient(NodeService, h.transport).listNodes({});
  return nodes.map((n) => n.worker?.id as string);
}

/** A manager on a LevelDB store in a temporary directory, with worker w1 connected. */
async function onLevelDb(t: ExecutionContext) {
  const dir = await tempDir(t);
  const store = await LevelStore.open(dir);
  // Closed by stop() when the test gets there.
  t.teardown(() => store.close().catch(() => undefined));
  const clock = new FakeClock();
  const h = await harness(t, { ...OPTIONS, clock, store });
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  return { dir, store, clock, h, w1 };
}

/** Stops the manager and closes its store, as a manager process that exits. */
async function stop(h: Harness): Promise<void> {
  await h.cp.close();
  await h.store.close();
}

/** A new manager on the LevelDB directory `dir`, closed at the end of the test. */
async function startOn(t: ExecutionContext, dir: string, clock: FakeClock): Promise<Harness> {
  const store = await LevelStore.open(dir);
  t.teardown(() => store.close());
  return harness(t, { ...OPTIONS, clock, store });
}

test("a worker DOWN past --node-gc-after is removed: gone from ListNodes, WatchWorkers says removed once, and the store forgets it; a minute short of it, it stays", async (t) => {
  const { dir, clock, h, w1 } = await onLevelDb(t);
  await new FakeWorker("w2").connect(h.transport);
  const watch = watchWorkers(t, h);

  t.is(downSince(h, "w1"), undefined, "READY: no down_since");
  const since = await goDown(h, clock, w1);
  t.is(since, clock.now(), "stamped when it went DOWN");
  const { worker } = await h.workers.getWorker({ id: "w1" });
  t.is(worker?.status, WorkerStatus.DOWN);
  t.is(worker?.downSince && timestampMs(worker.downSince), since, "the API shows it");

  // The last sweep before this saw it DOWN for less than an hour: it stays.
  await advanceTo(h, clock, since + HOUR - 1);
  t.deepEqual(await listed(h), ["w1", "w2"]);
  t.false(
    watch.messages.some((r) => r.removed),
    "no removal yet",
  );

  // The next sweep finds it DOWN for an hour: removed.
  await advanceTo(h, clock, since + HOUR + TASK_GC_INTERVAL_MS);
  t.deepEqual(await listed(h), ["w2"]);
  t.deepEqual(
    (await h.workers.listWorkers({})).workers.map((w) => w.id),
    ["w2"],
  );
  const removed = await watch.removed();
  t.is(removed.worker?.id, "w1");
  t.is(removed.worker?.status, WorkerStatus.DOWN, "as it was");
  // Later sweeps do not remove it again.
  await advanceTo(h, clock, clock.now() + 3 * TASK_GC_INTERVAL_MS);
  t.is(watch.messages.filter((x) => x.removed).length, 1);

  // A manager started again on the same LevelDB directory: still gone.
  await stop(h);
  t.deepEqual(await listed(await startOn(t, dir, clock)), ["w2"]);
});

test("a worker that came back before --node-gc-after is not removed later on its old down_since", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { ...OPTIONS, clock });
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  const first = await goDown(h, clock, w1);

  await advanceTo(h, clock, first + 30 * MINUTE);
  await w1.connect(h.transport);
  t.is(h.cp.workers.get("w1")?.status, WorkerStatus.READY);
  t.is(downSince(h, "w1"), undefined, "READY again: down_since cleared");
  t.is((await h.workers.getWorker({ id: "w1" })).worker?.downSince, undefined);

  // Past an hour from the first DOWN, READY all along: kept.
  await advanceTo(h, clock, first + 61 * MINUTE);
  t.deepEqual(await listed(h), ["w1"]);

  // DOWN again: counted from now, not from the first time.
  const second = await goDown(h, clock, w1);
  t.true(second > first + HOUR);
  await advanceTo(h, clock, first + 2 * HOUR);
  t.deepEqual(await listed(h), ["w1"], "DOWN for less than an hour this time");
  await advanceTo(h, clock, second + HOUR + TASK_GC_INTERVAL_MS);
  t.deepEqual(await listed(h), []);
});

test("down_since survives a manager restart (LevelDB): the next manager goes on counting from it", async (t) => {
  const { dir, clock, h, w1 } = await onLevelDb(t);
  const since = await goDown(h, clock, w1);
  await advanceTo(h, clock, since + 40 * MINUTE);
  await stop(h);

  // The store itself gives it back.
  const store = await LevelStore.open(dir);
  const [record] = (await store.load()).workers;
  await store.close();
  t.is(record?.worker.downSince && timestampMs(record.worker.downSince), since);

  const after = await startOn(t, dir, clock);
  // DISCONNECTED through the start-up grace: not DOWN, so the API shows no down_since yet.
  const loaded = (await after.workers.getWorker({ id: "w1" })).worker;
  t.is(loaded?.status, WorkerStatus.DISCONNECTED);
  t.is(loaded?.downSince, undefined);
  clock.advance(after.cp.options.startupGraceMs);
  t.is(after.cp.workers.get("w1")?.status, WorkerStatus.DOWN);
  t.is(downSince(after, "w1"), since, "the first DOWN, not this manager's");

  // An hour after the first DOWN, though only ~20 minutes after this manager's: removed.
  await advanceTo(after, clock, since + HOUR + TASK_GC_INTERVAL_MS);
  t.deepEqual(await listed(after), []);
});

test("a worker stored without down_since (an older store) counts from when this manager marks it DOWN", async (t) => {
  const store = new MemoryStore();
  store.putWorker({ worker: create(WorkerSchema, { id: "old", name: "old" }), lastUpdateSeq: 0n });
  const clock = new FakeClock();
  const h = await harness(t, { ...OPTIONS, clock, store });
  clock.advance(h.cp.options.startupGraceMs);
  t.is(h.cp.workers.get("old")?.status, WorkerStatus.DOWN);
  const since = downSince(h, "old") as number;
  t.is(since, clock.now());
  await advanceTo(h, clock, since + HOUR - 1);
  t.deepEqual(await listed(h), ["old"]);
  await advanceTo(h, clock, since + HOUR + TASK_GC_INTERVAL_MS);
  t.deepEqual(await listed(h), []);
});

test("with --node-gc-after 0 a DOWN worker stays", async (t) => {
  const clock = new FakeClock();
  // Heartbeats far apart: the liveness ticker then wakes a few thousand times in two days.
  const h = await harness(t, {
    clock,
    nodeGcAfterMs: 0,
    heartbeatIntervalMs: MINUTE,
    heartbeatTimeoutMs: 100 * HOUR,
  });
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  const since = await goDown(h, clock, w1);
  await advanceTo(h, clock, since + 48 * HOUR);
  t.deepEqual(await listed(h), ["w1"]);
});
