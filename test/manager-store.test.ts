import { once } from "node:events";
import { readdir, rm } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test from "ava";
import {
  type Task,
  TaskEventSchema,
  TaskEventType,
  TaskSchema,
  TaskSpecSchema,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { WorkerSchema } from "../gen/cube/v1/worker_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { parseListen } from "../lib/rpc/server.js";
import { LevelStore, SECRET_KEY_FILE } from "../manager/store/level-store.js";
import { tempDir } from "./fixtures.js";
import { spawnCube } from "./manager-process.js";

function task(
  id: string,
  revision: bigint,
  spec = create(TaskSpecSchema, { image: "img", env: { A: "1" } }),
): Task {
  return create(TaskSchema, {
    id,
    spec,
    state: TaskState.PENDING,
    revision,
    createdAt: timestampNow(),
  });
}

function event(t: Task, type = TaskEventType.STATE_CHANGED) {
  return create(TaskEventSchema, { revision: t.revision, type, task: t, time: timestampNow() });
}

test("LevelStore: everything written comes back after a reopen, in creation order", async (t) => {
  const dir = await tempDir(t);
  let store = await LevelStore.open(dir);
  t.deepEqual((await store.load()).revision, 0n);
  const a1 = task("a", 1n);
  const b2 = task("b", 2n);
  const a3 = { ...a1, state: TaskState.SCHEDULED, workerId: "w1", revision: 3n };
  store.putTask({ task: a1, createdRevision: 1n });
  store.putEvent(event(a1, TaskEventType.CREATED));
  store.putTask({ task: b2, createdRevision: 2n });
  store.putEvent(event(b2, TaskEventType.CREATED));
  store.putTask({ task: a3, createdRevision: 1n });
  store.putEvent(event(a3));
  store.putWorker({
    worker: create(WorkerSchema, { id: "w1", name: "one", address: "x:1" }),
    lastUpdateSeq: 42n,
  });
  const flush = store.flush();
  t.is(store.flush(), flush, "writes queued in one turn share one group commit");
  await flush;
  await store.close();
  store = await LevelStore.open(dir);
  const loaded = await store.load();
  t.is(loaded.revision, 3n);
  t.deepEqual(
    loaded.tasks.map((r) => [r.task.id, r.createdRevision, r.task.state]),
    [
      ["a", 1n, TaskState.SCHEDULED],
      ["b", 2n, TaskState.PENDING],
    ],
  );
  t.deepEqual(loaded.tasks[0]?.task.spec?.env, { A: "1" });
  t.is(loaded.tasks[0]?.task.workerId, "w1");
  t.is(loaded.workers[0]?.lastUpdateSeq, 42n);
  t.is(loaded.workers[0]?.worker.name, "one");
  const aEvents = await store.taskEvents("a", 0n, 10);
  t.deepEqual(
    aEvents.map((e) => e.revision),
    [1n, 3n],
  );
  t.is(aEvents[0]?.task?.spec, undefined, "events are stored without the spec");
  t.deepEqual(
    (await store.taskEvents("a", 1n, 10)).map((e) => e.revision),
    [3n],
  );
  t.deepEqual(
    (await store.eventsAfter(1n, 1)).map((e) => e.revision),
    [2n],
  );
  await store.close();
});

test("LevelStore: paging through the log crosses commits in order, each page where the last ended", async (t) => {
  const dir = await tempDir(t);
  const store = await LevelStore.open(dir);
  t.teardown(() => store.close());
  await store.load();
  // Three group commits of five events: three blobs.
  for (let r = 1n; r <= 15n; r++) {
    const x = task(`t${r}`, r);
    store.putTask({ task: x, createdRevision: r });
    store.putEvent(event(x));
    if (r % 5n === 0n) await store.flush();
  }
  for (const size of [1, 2, 4, 7, 100]) {
    const seen: bigint[] = [];
    for (let page = await store.eventsAfter(0n, size); page.length > 0; ) {
      seen.push(...page.map((e) => e.revision));
      page = await store.eventsAfter(page.at(-1)?.revision ?? 0n, size);
    }
    t.deepEqual(
      seen,
      Array.from({ length: 15 }, (_, i) => BigInt(i + 1)),
      `pages of ${size}`,
    );
  }
  // From the middle of a blob, and back to an earlier one (the blob read last is not the only one).
  t.deepEqual(
    (await store.eventsAfter(12n, 10)).map((e) => e.revision),
    [13n, 14n, 15n],
  );
  t.deepEqual(
    (await store.eventsAfter(2n, 4)).map((e) => e.revision),
    [3n, 4n, 5n, 6n],
  );
  t.deepEqual(await store.eventsAfter(15n, 10), []);
});

test("LevelStore: a second process on the same directory gets a clear error", async (t) => {
  const dir = await tempDir(t);
  const store = await LevelStore.open(dir);
  t.teardown(() => store.close());
  const error = await t.throwsAsync(LevelStore.open(dir));
  t.regex(error?.message ?? "", /in use by another process/);
});

test("LevelStore: a directory whose CURRENT file is gone is refused, not started over empty", async (t) => {
  const dir = await tempDir(t);
  const store = await LevelStore.open(dir);
  const a = task("a", 1n);
  store.putTask({ task: a, createdRevision: 1n });
  store.putEvent(event(a, TaskEventType.CREATED));
  await store.flush();
  await store.close();
  await rm(join(dir, "CURRENT"));
  const before = (await readdir(dir)).sort();
  const error = await t.throwsAsync(LevelStore.open(dir));
  t.regex(error?.message ?? "", /is damaged: it holds LevelDB files .* but no CURRENT file/);
  t.deepEqual((await readdir(dir)).sort(), before, "nothing in the directory was touched");
});

test("LevelStore: secret values sealed with a key that is gone name the key file", async (t) => {
  const dir = await tempDir(t);
  let store = await LevelStore.open(dir);
  const spec = create(TaskSpecSchema, { image: "img", secretEnv: { PASSWORD: "hunter2pw" } });
  const a = task("a", 1n, spec);
  store.putTask({ task: a, createdRevision: 1n });
  store.putEvent(event(a, TaskEventType.CREATED));
  await store.flush();
  await store.close();
  await rm(join(dir, SECRET_KEY_FILE));
  store = await LevelStore.open(dir);
  t.teardown(() => store.close());
  const error = await t.throwsAsync(store.load());
  t.regex(error?.message ?? "", /cannot open the secret_env values stored in .*secrets\.key/);
  t.notRegex(error?.message ?? "", /hunter2pw/);
});

test("LevelStore: retention drops the oldest events, and the index with them", async (t) => {
  const dir = await tempDir(t);
  const store = await LevelStore.open(dir, { eventRetention: 10 });
  await store.load();
  for (let r = 1n; r <= 40n; r++) {
    const x = task(`t${r % 3n}`, r);
    store.putTask({ task: x, createdRevision: r });
    store.putEvent(event(x));
    await store.flush();
  }
  await new Promise((r) => setTimeout(r, 200));
  // Dropped in chunks: at most 10% + 16 over the retention are kept.
  const kept = 40n - store.oldestRevision() + 1n;
  t.true(kept >= 10n && kept <= 27n, `kept ${kept}`);
  const all = await store.eventsAfter(0n, 100);
  t.is(all[0]?.revision, store.oldestRevision());
  t.is(all.at(-1)?.revision, 40n);
  const t1 = await store.taskEvents("t1", 0n, 100);
  t.true(t1.every((e) => e.revision >= store.oldestRevision()));
  await store.close();
  const again = await LevelStore.open(dir, { eventRetention: 10 });
  t.is((await again.load()).revision, 40n);
  t.is(again.oldestRevision(), all[0]?.revision);
  await again.close();
});

test("kill -9 of a manager process: every acknowledged task is back, and revisions continue", async (t) => {
  const dir = await tempDir(t);
  const env = { CUBE_DATA_DIR: dir, CUBE_LISTEN: "127.0.0.1:0", CUBE_LOG_LEVEL: "warn" };
  const first = await spawnCube(t, "manager/main.ts", env);
  const client = createClient(TaskService, grpcTransport(first.address, { token: first.token }));
  const acknowledged = new Set<string>();
  let refused = 0;
  const submit = async (i: number) => {
    try {
      const { task } = await client.runTask({
        id: `t${i}`,
        spec: { image: "img", labels: { i: String(i) } },
      });
      if (task) acknowledged.add(task.id);
    } catch {
      refused++;
    }
  };
  // Keep 20 requests in flight; kill the manager once 100 were acknowledged.
  let next = 0;
  const lanes = Array.from({ length: 20 }, async () => {
    while (next < 400) {
      const i = next++;
      if (i === 0) await new Promise((r) => setTimeout(r, 0));
      await submit(i);
      if (acknowledged.size >= 100 && first.child.exitCode === null) await first.kill9();
    }
  });
  await Promise.all(lanes);
  t.true(acknowledged.size >= 100, `${acknowledged.size} acknowledged`);
  t.true(refused > 0, "some requests hit the dead manager");
  t.log(`${acknowledged.size} acknowledged before kill -9, ${refused} refused`);
  const second = await spawnCube(t, "manager/main.ts", env);
  const after = createClient(TaskService, grpcTransport(second.address, { token: second.token }));
  const seen = new Set<string>();
  let token = "";
  let revision = 0n;
  do {
    const page = await after.listTasks({ pageSize: 1000, pageToken: token });
    for (const x of page.tasks) seen.add(x.id);
    token = page.nextPageToken;
    revision = page.revision;
  } while (token);
  for (const id of acknowledged) t.true(seen.has(id), `acknowledged task ${id} is back`);
  const { task } = await after.runTask({ id: "later", spec: { image: "img" } });
  t.true((task?.revision ?? 0n) > revision, "the revision counter continues");
  const { events } = await after.listTaskEvents({ taskId: [...acknowledged][0] ?? "" });
  t.is(events[0]?.type, TaskEventType.CREATED);
  const missing = await after.getTask({ id: "never" }).catch((e) => ConnectError.from(e));
  t.is((missing as ConnectError).code, Code.NotFound);
});

test("SIGTERM stops a manager process gracefully and loses nothing", async (t) => {
  const dir = await tempDir(t);
  const env = { CUBE_DATA_DIR: dir, CUBE_LISTEN: "127.0.0.1:0", CUBE_LOG_LEVEL: "info" };
  const first = await spawnCube(t, "manager/main.ts", env);
  const client = createClient(TaskService, grpcTransport(first.address, { token: first.token }));
  await Promise.all(
    Array.from({ length: 50 }, (_, i) => client.runTask({ id: `t${i}`, spec: { image: "img" } })),
  );
  const exited = new Promise<number | null>((resolve) =>
    first.child.once("exit", (code) => resolve(code)),
  );
  const started = Date.now();
  first.child.kill("SIGTERM");
  t.is(await exited, 0);
  t.true(Date.now() - started < 6000, `stopped in ${Date.now() - started} ms`);
  t.regex(first.logs(), /"msg":"manager stopped"/);
  const second = await spawnCube(t, "manager/main.ts", env);
  const again = createClient(TaskService, grpcTransport(second.address, { token: second.token }));
  t.is((await again.listTasks({})).tasks.length, 50);
});

test("a manager whose drain outlasts its shutdown deadline exits 1 and says so", async (t) => {
  const dir = await tempDir(t);
  const env = {
    CUBE_DATA_DIR: dir,
    CUBE_LISTEN: "127.0.0.1:0",
    CUBE_LOG_LEVEL: "info",
    CUBE_SHUTDOWN_TIMEOUT: "200",
  };
  const m = await spawnCube(t, "manager/main.ts", env);
  // A peer that connected and says nothing keeps the drain busy: the server waits for every
  // connection to end, up to its 1 s hard close, so the 200 ms deadline falls due first.
  // (Open watches no longer do: a drain ends them at once. A 0 ms deadline with nothing
  // open raced the store's close, and lost now and then.)
  const { host, port } = parseListen(m.address);
  const silent = connect({ host, port });
  t.teardown(() => silent.destroy());
  await once(silent, "connect");
  // The manager has accepted it: a call answered after the connect was served after it.
  const client = createClient(TaskService, grpcTransport(m.address, { token: m.token }));
  await client.listTasks({});
  const exited = new Promise<number | null>((resolve) =>
    m.child.once("exit", (code) => resolve(code)),
  );
  m.child.kill("SIGTERM");
  t.is(await exited, 1);
  t.regex(m.logs(), /"msg":"shutdown deadline passed"/);
  t.notRegex(m.logs(), /"msg":"manager stopped"/);
});
