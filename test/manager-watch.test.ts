import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test from "ava";
import { type TaskEvent, TaskEventType } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { resumeAfter } from "../lib/rpc/resume-after.js";
import { startServer } from "../lib/rpc/server.js";
import { MANAGER_FILES, managerRoutes } from "../manager/api/routes.js";
import { EventHub } from "../manager/core/event-hub.js";
import { MemoryStore } from "../manager/store/memory-store.js";
import { eventually, harness, spec } from "./manager-harness.js";

async function collect(
  iterable: AsyncIterable<{ event?: TaskEvent }>,
  into: TaskEvent[],
  until: (e: TaskEvent) => boolean,
): Promise<void> {
  for await (const r of iterable) {
    if (r.event) into.push(r.event);
    if (r.event && until(r.event)) return;
  }
}

test("WatchTasks from 0 sends only new events", async (t) => {
  const h = await harness(t);
  await h.tasks.runTask({ id: "old", spec: spec() });
  const ac = new AbortController();
  const got: TaskEvent[] = [];
  const done = collect(
    h.tasks.watchTasks({ afterRevision: 0n }, { signal: ac.signal }),
    got,
    (e) => e.task?.id === "new",
  );
  await eventually(() => {
    if (h.cp.hub.watcherCount !== 1) throw new Error("not subscribed yet");
  });
  await h.tasks.runTask({ id: "new", spec: spec() });
  await done;
  ac.abort();
  t.deepEqual(
    got.map((e) => e.task?.id),
    ["new"],
  );
  t.is(got[0]?.type, TaskEventType.CREATED);
});

test("WatchTasks resumes from a revision without gaps or duplicates", async (t) => {
  const h = await harness(t);
  for (let i = 0; i < 10; i++) await h.tasks.runTask({ id: `a${i}`, spec: spec() });
  // First watcher: from revision 1 on, gone after 5 events (as if disconnected).
  const first: TaskEvent[] = [];
  const ac1 = new AbortController();
  await collect(
    h.tasks.watchTasks({ afterRevision: 1n }, { signal: ac1.signal }),
    first,
    () => first.length === 5,
  );
  ac1.abort();
  // Meanwhile more events happen.
  for (let i = 0; i < 10; i++) await h.tasks.runTask({ id: `b${i}`, spec: spec() });
  const last = first.at(-1)?.revision ?? 0n;
  const second: TaskEvent[] = [];
  const ac2 = new AbortController();
  const resumed = collect(
    h.tasks.watchTasks({ afterRevision: last }, { signal: ac2.signal }),
    second,
    (e) => e.task?.id === "c0",
  );
  await h.tasks.runTask({ id: "c0", spec: spec() });
  await resumed;
  ac2.abort();
  const revisions = [...first, ...second].map((e) => e.revision);
  const expected = Array.from({ length: revisions.length }, (_, i) => 2n + BigInt(i));
  t.deepEqual(revisions, expected);
  t.is(second.at(-1)?.task?.id, "c0");
});

test("WatchTasks serves old history from the store when memory no longer has it", async (t) => {
  const h = await harness(t, { watchHistorySize: 4 });
  for (let i = 0; i < 20; i++)
    await h.tasks.runTask({ id: `t${i}`, spec: spec({ name: `n${i}` }) });
  const got: TaskEvent[] = [];
  const ac = new AbortController();
  await collect(
    h.tasks.watchTasks({ afterRevision: 3n }, { signal: ac.signal }),
    got,
    (e) => e.revision === 20n,
  );
  ac.abort();
  t.deepEqual(
    got.map((e) => e.revision),
    Array.from({ length: 17 }, (_, i) => BigInt(i + 4)),
  );
  t.is(got[0]?.task?.spec?.name, "n3", "the spec is filled in");
});

test("WatchTasks of one task sends only its events", async (t) => {
  const h = await harness(t);
  await h.tasks.runTask({ id: "x", spec: spec() });
  await h.tasks.runTask({ id: "y", spec: spec() });
  const got: TaskEvent[] = [];
  const ac = new AbortController();
  const done = collect(
    h.tasks.watchTasks({ afterRevision: 1n, taskId: "x" }, { signal: ac.signal }),
    got,
    (e) => e.type === TaskEventType.STATE_CHANGED,
  );
  await h.tasks.stopTask({ id: "y" });
  await h.tasks.stopTask({ id: "x" });
  await done;
  ac.abort();
  t.true(got.every((e) => e.task?.id === "x"));
  t.deepEqual(
    got.map((e) => TaskEventType[e.type]),
    ["DESIRED_CHANGED", "STATE_CHANGED"],
  );
});

test("WatchTasks answers OUT_OF_RANGE for dropped history and for the future", async (t) => {
  const h = await harness(t, {
    store: new MemoryStore({ eventRetention: 5 }),
    watchHistorySize: 2,
  });
  for (let i = 0; i < 30; i++) await h.tasks.runTask({ spec: spec() });
  const read = async (after: bigint) => {
    try {
      for await (const _ of h.tasks.watchTasks({ afterRevision: after })) return "event";
    } catch (error) {
      return ConnectError.from(error);
    }
    return "ended";
  };
  const old = await read(1n);
  t.true(old instanceof ConnectError && old.code === Code.OutOfRange, String(old));
  t.regex(String((old as ConnectError).rawMessage), /no longer kept/);
  const future = await read(1000n);
  t.true(future instanceof ConnectError && future.code === Code.OutOfRange, String(future));
  t.is(await read(29n), "event");
});

test("WatchTasks from_oldest replays every event kept, revision 1 included, then follows; never with an after_revision", async (t) => {
  const h = await harness(t);
  for (let i = 0; i < 3; i++) await h.tasks.runTask({ id: `a${i}`, spec: spec() });
  const got: TaskEvent[] = [];
  const ac = new AbortController();
  const done = collect(
    h.tasks.watchTasks({ fromOldest: true }, { signal: ac.signal }),
    got,
    (e) => e.task?.id === "later",
  );
  await eventually(() => {
    if (h.cp.hub.watcherCount !== 1) throw new Error("not subscribed yet");
  });
  await h.tasks.runTask({ id: "later", spec: spec() });
  await done;
  ac.abort();
  t.deepEqual(
    got.map((e) => e.revision),
    [1n, 2n, 3n, 4n],
  );
  const both = await (async () => {
    for await (const _ of h.tasks.watchTasks({ fromOldest: true, afterRevision: 2n })) return;
  })().catch((e) => ConnectError.from(e));
  t.is((both as ConnectError).code, Code.InvalidArgument);
  t.regex((both as ConnectError).rawMessage, /after_revision must then be 0/);

  // Once retention dropped the first events: from the oldest still kept.
  const kept = await harness(t, {
    store: new MemoryStore({ eventRetention: 5 }),
    watchHistorySize: 2,
  });
  for (let i = 0; i < 30; i++) await kept.tasks.runTask({ spec: spec() });
  const oldest = kept.cp.store.oldestRevision();
  t.true(oldest > 1n, `oldest kept ${oldest}`);
  const replayed: TaskEvent[] = [];
  const ac2 = new AbortController();
  await collect(
    kept.tasks.watchTasks({ fromOldest: true }, { signal: ac2.signal }),
    replayed,
    (e) => e.revision === 30n,
  );
  ac2.abort();
  t.is(replayed[0]?.revision, oldest);
  t.is(replayed.length, Number(30n - oldest + 1n));
});

test("the hub cuts off a watcher that falls behind and keeps feeding the others", async (t) => {
  const hub = new EventHub(10, 0n);
  const slow = hub.subscribe(3);
  const fast = hub.subscribe(100);
  const event = (revision: bigint) => ({ revision, task: { id: "x" } }) as TaskEvent;
  for (let r = 1n; r <= 5n; r++) hub.publish(event(r));
  t.true(slow.overflowed);
  t.false(fast.overflowed);
  t.is(hub.watcherCount, 1);
  t.is(await slow.take(new AbortController().signal), undefined, "the slow one is told");
  t.deepEqual(
    (await fast.take(new AbortController().signal))?.map((e) => e.revision),
    [1n, 2n, 3n, 4n, 5n],
    "the fast one got every event",
  );
  t.deepEqual(
    hub.since(2n)?.map((e) => e.revision),
    [3n, 4n, 5n],
  );
});

test("a slow watcher on a real server is cut off with RESOURCE_EXHAUSTED and never slows the manager", async (t) => {
  const h = await harness(t, { watchBufferSize: 50 });
  const server = await startServer({
    listen: "127.0.0.1:0",
    routes: managerRoutes(h.cp),
    files: MANAGER_FILES,
  });
  t.teardown(() => server.close());
  const client = createClient(TaskService, grpcTransport(server.address));
  // The slow one: opened, read once, then left alone (HTTP/2 flow control stops the server).
  // Watch from a listed revision: a watch from 0 could start after the first RunTask.
  const { revision } = await client.listTasks({});
  const slow = client.watchTasks({ afterRevision: revision })[Symbol.asyncIterator]();
  const firstRead = slow.next();
  await client.runTask({ id: "warm", spec: spec() });
  await firstRead;
  const fast: TaskEvent[] = [];
  const ac = new AbortController();
  const fastDone = collect(
    client.watchTasks(
      { afterRevision: (await client.listTasks({})).revision },
      { signal: ac.signal },
    ),
    fast,
    (e) => e.task?.id === "t1999",
  );
  const started = performance.now();
  for (let i = 0; i < 2000; i += 100) {
    await Promise.all(
      Array.from({ length: 100 }, (_, j) =>
        client.runTask({ id: `t${i + j}`, spec: spec({ env: { PAD: "x".repeat(200) } }) }),
      ),
    );
  }
  const ms = performance.now() - started;
  await fastDone;
  ac.abort();
  t.is(fast.length, 2000, "the fast watcher got everything");
  t.true(ms < 20_000, `2000 RunTasks took ${ms} ms`);
  // The fast one leaves once its abort reaches the server; the slow one was dropped.
  await eventually(() => {
    if (h.cp.hub.watcherCount !== 0) throw new Error(`${h.cp.hub.watcherCount} watchers left`);
  });
  let error: unknown;
  let read = 0;
  try {
    for (;;) {
      const r = await slow.next();
      if (r.done) break;
      read++;
    }
  } catch (e) {
    error = e;
  }
  t.true(read < 2000, `the slow watcher read ${read}`);
  const e = ConnectError.from(error);
  t.is(e.code, Code.ResourceExhausted, String(error));
  const named = /after_revision (\d+)/.exec(e.rawMessage)?.[1];
  t.truthy(named, e.rawMessage);
  // The same revision for programs, in the trailer (the token limits' RESOURCE_EXHAUSTED
  // carry none).
  t.is(resumeAfter(e), BigInt(named ?? -1));
});
