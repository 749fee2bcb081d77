/**
 * The worker's state pieces on their own: the LevelDB store and outbox (on disk, across
 * reopen), the recovery plan, back-off, the per-task queue, the async queue and labels.
 */
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import test from "ava";
import { Level } from "level";
import { DesiredState, type Task, TaskSchema, TaskState } from "../gen/cube/v1/task_pb.js";
import { AsyncQueue } from "../worker/async-queue.js";
import { backoffDelay } from "../worker/backoff.js";
import { parseLabels, workerEnv, workerOptionsFromEnv } from "../worker/env.js";
import { DataDirInUseError, WorkerStore } from "../worker/store/worker-store.js";
import { Outbox } from "../worker/stream/outbox.js";
import type { ContainerInfo } from "../worker/tasks/driver.js";
import { KeyedSerial } from "../worker/tasks/keyed-serial.js";
import { planRecovery, type RecoveryAction } from "../worker/tasks/recovery-plan.js";
import { tempDir } from "./fixtures.js";

const update = (taskId: string, state = TaskState.RUNNING) => ({
  taskId,
  generation: 1n,
  state,
});

test("the outbox numbers updates 1, 2, 3… and keeps them across a reopen until acked", async (t) => {
  const dir = await tempDir(t);
  let store = await WorkerStore.open(dir);
  const id = store.workerId;
  let outbox = await Outbox.open(store);
  const task = create(TaskSchema, { id: "a", generation: 1n, state: TaskState.RUNNING });
  const [u1, u2, u3] = await Promise.all([
    outbox.append(update("a"), { putTasks: [task] }),
    outbox.append(update("b")),
    outbox.append(update("c")),
  ]);
  t.deepEqual([u1.seq, u2.seq, u3.seq], [1n, 2n, 3n]);
  t.truthy(u1.time);
  await outbox.ack(1n);
  await store.close();

  store = await WorkerStore.open(dir);
  t.is(store.workerId, id, "the worker id is kept");
  outbox = await Outbox.open(store);
  t.deepEqual(
    outbox.pending().map((u) => [u.seq, u.taskId]),
    [
      [2n, "b"],
      [3n, "c"],
    ],
  );
  t.deepEqual(
    (await store.tasks()).map((x) => x.id),
    ["a"],
  );
  await outbox.ack(3n);
  await store.close();

  // Everything acknowledged: the counter still never goes back.
  store = await WorkerStore.open(dir);
  t.teardown(() => store.close());
  outbox = await Outbox.open(store);
  t.is(outbox.pending().length, 0);
  t.is((await outbox.append(update("d"))).seq, 4n);
});

test("a data dir open in one store refuses a second", async (t) => {
  const dir = await tempDir(t);
  const store = await WorkerStore.open(dir);
  t.teardown(() => store.close());
  const error = await t.throwsAsync(WorkerStore.open(dir), { instanceOf: DataDirInUseError });
  t.regex(error?.message ?? "", /is in use by another worker/);
});

test("a data dir the store cannot open names the cause, not only that it failed", async (t) => {
  // Where LevelDB's directory should be, a file: it cannot open, as on a read-only file
  // system (EROFS) or a directory of another owner, and the cause is what says why.
  const dir = await tempDir(t);
  await writeFile(join(dir, "worker.db"), "");
  const error = await t.throwsAsync(WorkerStore.open(dir));
  t.regex(
    error?.message ?? "",
    /^cannot open the worker state in .*: Database failed to open: .*EEXIST/,
  );
});

test("outbox listeners hear appends only once they are durable, in order", async (t) => {
  const store = await WorkerStore.open(await tempDir(t));
  t.teardown(() => store.close());
  const outbox = await Outbox.open(store);
  const heard: bigint[] = [];
  outbox.subscribe(() => heard.push(outbox.pending().at(-1)?.seq ?? 0n));
  await Promise.all(Array.from({ length: 20 }, (_, i) => outbox.append(update(`t${i}`))));
  t.deepEqual(
    heard,
    Array.from({ length: 20 }, (_, i) => BigInt(i + 1)),
  );
});

const record = (id: string, state: TaskState, generation = 2n, extra = {}) =>
  create(TaskSchema, { id, state, generation, containerId: `c-${id}`, ...extra });
const container = (
  taskId: string,
  generation: bigint,
  running: boolean,
  exitCode?: number,
  extra: Partial<ContainerInfo> = {},
) =>
  ({
    containerId: `c-${taskId}-g${generation}`,
    taskId,
    generation,
    running,
    exitCode,
    ports: [],
    ...extra,
  }) satisfies ContainerInfo;
const summarize = (plan: RecoveryAction[]) =>
  plan.map((a) =>
    "task" in a
      ? `${a.kind} ${a.task.id}${"container" in a && a.container ? ` ${a.container.containerId}` : ""}`
      : `${a.kind} ${a.container.containerId}`,
  );

test("the recovery plan adopts, reports, forgets and removes, and never starts anything", (t) => {
  const plan = planRecovery(
    [
      record("running", TaskState.RUNNING),
      record("lagging", TaskState.SCHEDULED),
      record("exited", TaskState.RUNNING),
      record("gone", TaskState.RUNNING),
      record("never", TaskState.SCHEDULED),
      record("done", TaskState.FAILED),
      record("stopping", TaskState.RUNNING, 2n, { desiredState: DesiredState.STOPPED }),
    ],
    [
      container("running", 2n, true),
      container("running", 1n, false, 0),
      container("lagging", 2n, true),
      container("exited", 2n, false, 137),
      container("done", 2n, false, 1),
      container("stopping", 2n, true),
      container("orphan", 5n, true),
    ],
  );
  t.deepEqual(summarize(plan), [
    "remove c-running-g1",
    "adopt running c-running-g2",
    "adopt lagging c-lagging-g2",
    "exited exited c-exited-g2",
    "vanished gone",
    "forget never",
    "keep done c-done-g2",
    "finish-stop stopping c-stopping-g2",
    "remove c-orphan-g5",
  ]);
});

// A look-alike: a `docker commit` of a task's container run under another name, or one made
// by hand with the same cube.* labels. Its labels name the task; its name is not cube's.
const lookAlike = (taskId: string, generation: bigint, running = true, exitCode?: number) =>
  container(taskId, generation, running, exitCode, {
    containerId: `qa-${taskId}-g${generation}`,
    name: `qa-${taskId}`,
    foreign: true,
  });

const porta = record("porta", TaskState.RUNNING, 2n, { containerId: "c-porta-g2" });
const fresh = record("new", TaskState.SCHEDULED, 2n, { containerId: "" });
const named = container("new", 2n, true, undefined, { name: "cube-new-g2-w" });
const done = record("done", TaskState.FAILED, 2n, { containerId: "c-done-g2" });
const stopping = record("stopping", TaskState.RUNNING, 2n, {
  containerId: "c-stopping-g2",
  desiredState: DesiredState.STOPPED,
});
const web3 = record("web", TaskState.RUNNING, 3n, { containerId: "c-web-g3" });

// [case, records, containers, the plan]
const planCases: [string, Task[], ContainerInfo[], string[]][] = [
  [
    "the record's container is adopted, a running look-alike beside it left alone",
    [porta],
    [lookAlike("porta", 2n), container("porta", 2n, true)],
    ["foreign qa-porta-g2", "adopt porta c-porta-g2"],
  ],
  [
    "the look-alike listed first or last changes nothing",
    [porta],
    [container("porta", 2n, true), lookAlike("porta", 2n)],
    ["foreign qa-porta-g2", "adopt porta c-porta-g2"],
  ],
  [
    "the record's container gone, a look-alike is not adopted: the task vanished",
    [porta],
    [lookAlike("porta", 2n)],
    ["foreign qa-porta-g2", "vanished porta"],
  ],
  [
    "an exited record's container is reported even when a look-alike runs",
    [porta],
    [lookAlike("porta", 2n), container("porta", 2n, false, 3)],
    ["foreign qa-porta-g2", "exited porta c-porta-g2"],
  ],
  [
    "no container id yet: the one cube named is adopted, not the look-alike",
    [fresh],
    [lookAlike("new", 2n), named],
    ["foreign qa-new-g2", "adopt new c-new-g2"],
  ],
  [
    "no container id and only a look-alike: the start is forgotten",
    [fresh],
    [lookAlike("new", 2n)],
    ["foreign qa-new-g2", "forget new"],
  ],
  [
    "cube's own older generation is removed, a look-alike of it is not",
    [web3],
    [container("web", 2n, false, 0), lookAlike("web", 2n, false, 0), container("web", 3n, true)],
    ["remove c-web-g2", "foreign qa-web-g2", "adopt web c-web-g3"],
  ],
  [
    "with no record: cube's container is removed, a look-alike left alone",
    [],
    [container("gone", 1n, true), lookAlike("gone", 1n)],
    ["remove c-gone-g1", "foreign qa-gone-g1"],
  ],
  [
    "an ended record keeps its container; a stopping one finishes on its own",
    [done, stopping],
    [lookAlike("stopping", 2n), container("stopping", 2n, true), container("done", 2n, false, 1)],
    ["keep done c-done-g2", "foreign qa-stopping-g2", "finish-stop stopping c-stopping-g2"],
  ],
  [
    "an ended record whose container runs again (docker restart): it is removed",
    [done],
    [container("done", 2n, true)],
    ["stray done c-done-g2"],
  ],
];

for (const [name, records, containers, plan] of planCases) {
  test(`recovery plan: ${name}`, (t) => {
    t.deepEqual(summarize(planRecovery(records, containers)), plan);
  });
}

test("back-off doubles from 100 ms to 1 s, jittered within half of each step", (t) => {
  for (let attempt = 0; attempt < 12; attempt++) {
    const cap = Math.min(1000, 100 * 2 ** attempt);
    t.is(
      backoffDelay(attempt, undefined, () => 0),
      cap / 2,
    );
    t.is(
      backoffDelay(attempt, undefined, () => 1),
      cap,
    );
  }
  const late = backoffDelay(1000);
  t.true(late >= 500 && late <= 1000, `${late}`);
});

test("the per-task queue runs one task's work in order and others alongside", async (t) => {
  const serial = new KeyedSerial();
  const log: string[] = [];
  const step = (key: string, name: string, ms: number) =>
    serial.run(key, async () => {
      log.push(`${name}+`);
      await new Promise((r) => setTimeout(r, ms));
      log.push(`${name}-`);
    });
  const failing = serial.run("a", async () => {
    throw new Error("boom");
  });
  await Promise.all([step("a", "a1", 30), step("a", "a2", 1), step("b", "b1", 5)]);
  await t.throwsAsync(failing, { message: "boom" });
  t.deepEqual(log, ["b1+", "a1+", "b1-", "a1-", "a2+", "a2-"]);
  await serial.idle();
});

test("the async queue yields what was pushed, then ends when closed", async (t) => {
  const queue = new AsyncQueue<number>();
  queue.push(1);
  setTimeout(() => {
    queue.push(2);
    queue.close();
    t.false(queue.push(3));
  }, 10);
  const seen: number[] = [];
  for await (const n of queue) seen.push(n);
  t.deepEqual(seen, [1, 2]);
});

test("the async queue with pack sends what one turn pushed as one value", async (t) => {
  const queue = new AsyncQueue<number[]>({ pack: (values) => values.flat() });
  const seen: number[][] = [];
  const reading = (async () => {
    for await (const v of queue) seen.push(v);
  })();
  queue.push([1]);
  queue.push([2]);
  queue.push([3]);
  await new Promise((r) => setTimeout(r, 20));
  queue.push([4]);
  queue.close();
  await reading;
  t.deepEqual(seen, [[1, 2, 3], [4]]);
});

test("store changes made together share one batch, land in order, and survive a reopen", async (t) => {
  const dir = await tempDir(t);
  let store = await WorkerStore.open(dir);
  let outbox = await Outbox.open(store);
  const heard: bigint[] = [];
  outbox.subscribe(() => heard.push(outbox.pending().at(-1)?.seq ?? 0n));
  const tasks = Array.from({ length: 200 }, (_, i) =>
    create(TaskSchema, { id: `t${i}`, generation: 1n, state: TaskState.SCHEDULED }),
  );
  // Records and updates of 200 tasks in one turn, as a RUN burst makes them.
  const saved = Promise.all(tasks.slice(0, 100).map((task) => store.commit({ putTasks: [task] })));
  const appended = await Promise.all(
    tasks.map((task) => outbox.append(update(task.id), { putTasks: [task] })),
  );
  await saved;
  t.deepEqual(
    appended.map((u) => u.seq),
    tasks.map((_, i) => BigInt(i + 1)),
  );
  t.deepEqual(
    heard,
    appended.map((u) => u.seq),
    "visible one by one, in seq order",
  );
  await outbox.ack(150n);
  await store.close();
  store = await WorkerStore.open(dir);
  t.teardown(() => store.close());
  outbox = await Outbox.open(store);
  t.is((await store.tasks()).length, 200);
  t.deepEqual(
    outbox.pending().map((u) => u.seq),
    appended.slice(150).map((u) => u.seq),
    "acked updates are gone, the rest kept",
  );
});

test("task records keep secret env values sealed on disk, and give them back plain", async (t) => {
  const dir = await tempDir(t);
  const SECRET = "s3cr3t-value-that-must-not-be-on-disk";
  let store = await WorkerStore.open(dir);
  await store.commit({
    putTasks: [
      create(TaskSchema, {
        id: "with-secret",
        generation: 1n,
        spec: { image: "x", env: { PLAIN: "visible" }, secretEnv: { DB_PASSWORD: SECRET } },
      }),
    ],
  });
  await store.close();
  // Every file of the data dir but the key itself: the secret is in none of them.
  for (const name of await readdir(join(dir, "worker.db"))) {
    const bytes = await readFile(join(dir, "worker.db", name));
    t.false(bytes.includes(SECRET), `secret in worker.db/${name}`);
  }
  t.true((await readdir(dir)).includes("secrets.key"));
  // A record written before sealing (plain values) is read as it was.
  const db = new Level<string, Uint8Array>(join(dir, "worker.db"), { valueEncoding: "view" });
  await db.put(
    "!tasks!old",
    toBinary(
      TaskSchema,
      create(TaskSchema, { id: "old", spec: { image: "x", secretEnv: { TOKEN: "plain" } } }),
    ),
  );
  await db.close();
  store = await WorkerStore.open(dir);
  t.teardown(() => store.close());
  const byId = new Map((await store.tasks()).map((x) => [x.id, x]));
  t.deepEqual(byId.get("with-secret")?.spec?.secretEnv, { DB_PASSWORD: SECRET });
  t.deepEqual(byId.get("with-secret")?.spec?.env, { PLAIN: "visible" });
  t.deepEqual(byId.get("old")?.spec?.secretEnv, { TOKEN: "plain" });
});

test("labels parse from k=v,k=v and name the bad entry", (t) => {
  t.deepEqual(parseLabels("zone=a, tier=web,empty=,eq=a=b"), {
    zone: "a",
    tier: "web",
    empty: "",
    eq: "a=b",
  });
  t.deepEqual(parseLabels(undefined), {});
  t.deepEqual(parseLabels(["x=1"]), { x: "1" });
  t.throws(() => parseLabels("zone"), { message: /label "zone" is not key=value/ });
});

test("the environment alone configures a worker as `cube worker` reads it: durations, plaintext, metrics, policy; a bad value names its variable", (t) => {
  const options = workerOptionsFromEnv({
    CUBE_DATA_DIR: "/tmp/w",
    CUBE_INSECURE: "1",
    CUBE_METRICS: "off",
    CUBE_SHUTDOWN_TIMEOUT: "3s",
    CUBE_PULL_STALL_TIMEOUT: "1500",
    CUBE_RUNTIME_REQUEST_TIMEOUT: "1m",
    CUBE_PIDS_LIMIT: "64",
    CUBE_LABELS: "zone=a",
    CUBE_WARM_SANDBOXES: "0",
    CUBE_SANDBOX_IMAGE: "registry.local/pause:3",
  });
  t.like(options, {
    warmSandboxes: 0,
    sandboxImage: "registry.local/pause:3",
    manager: "127.0.0.1:5555",
    listen: "127.0.0.1:5556",
    dataDir: "/tmp/w",
    insecure: true,
    metrics: false,
    shutdownTimeoutMs: 3000,
    pullStallMs: 1500,
    runtimeRequestTimeoutMs: 60_000,
    policy: { pidsLimit: 64 },
    labels: { zone: "a" },
  });
  // Unset: the worker's own defaults, not values made up here.
  t.like(workerEnv({}), {
    manager: undefined,
    insecure: false,
    metrics: true,
    shutdownTimeoutMs: undefined,
    pullStallMs: undefined,
    warmSandboxes: undefined,
  });
  t.throws(() => workerEnv({ CUBE_SHUTDOWN_TIMEOUT: "soon" }), {
    message: /^CUBE_SHUTDOWN_TIMEOUT: /,
  });
  t.throws(() => workerEnv({ CUBE_LABELS: "zone" }), { message: /^CUBE_LABELS: label "zone"/ });
  t.throws(() => workerEnv({ CUBE_WARM_SANDBOXES: "four" }), {
    message: /^CUBE_WARM_SANDBOXES: .*"four" is not a whole number in 0–64/,
  });
  t.throws(() => workerEnv({ CUBE_WARM_SANDBOXES: "65" }), { message: /^CUBE_WARM_SANDBOXES: / });
  t.throws(() => workerOptionsFromEnv({}), { message: /CUBE_DATA_DIR is required/ });
  // Switches: the words of every boolean CUBE_* variable; a typo is refused, not read as off.
  t.like(
    workerEnv({ CUBE_INSECURE: "true", CUBE_ALLOW_NEW_PRIVILEGES: "yes", CUBE_METRICS: "0" }),
    {
      insecure: true,
      metrics: false,
      policy: { noNewPrivileges: false },
    },
  );
  t.deepEqual(workerEnv({ CUBE_ALLOW_NEW_PRIVILEGES: "off" }).policy, {});
  t.throws(() => workerEnv({ CUBE_INSECURE: "yep" }), {
    message: /^CUBE_INSECURE: "yep" is neither/,
  });
  t.throws(() => workerEnv({ CUBE_ALLOW_NEW_PRIVILEGES: "please" }), {
    message: /^CUBE_ALLOW_NEW_PRIVILEGES: "please" is neither/,
  });
});
