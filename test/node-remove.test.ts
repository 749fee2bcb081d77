/**
 * NodeService.RemoveNode (`cube node rm`): a worker gone for good is forgotten — only a DOWN
 * one holding no task; it leaves ListNodes, ListWorkers and placement, WatchWorkers sends it
 * once more with `removed`, the removal survives a restart (MemoryStore and LevelStore), and
 * an agent that dials in again later registers as a new worker.
 */
import { create } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import test from "ava";
import { NodeRecordSchema } from "../gen/cube/store/v1/jobs_pb.js";
import { NodeService } from "../gen/cube/v1/node_service_pb.js";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { WorkerSchema, WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { LevelStore } from "../manager/store/level-store.js";
import { cube, cubeEnv } from "./cli-harness.js";
import { errorOf } from "./error-of.js";
import { FakeClock } from "./fake-clock.js";
import { tempDir } from "./fixtures.js";
import {
  eventually,
  FakeWorker,
  harness,
  reach,
  runningOnW1WithSpare,
  watchWorkers,
} from "./manager-harness.js";
import { Cluster } from "./manager-process.js";

test("only a DOWN worker holding no task is removed; it leaves every list, watchers hear it once more, a restart keeps it gone, and a return registers anew", async (t) => {
  const clock = new FakeClock();
  let h = await harness(t, { clock, heartbeatTimeoutMs: 3_600_000 });
  const { w1 } = await runningOnW1WithSpare(h);
  let nodes = createClient(NodeService, h.transport);
  const watch = watchWorkers(t, h);

  const ready = await errorOf(nodes.removeNode({ name: "w1" }));
  t.is(ready.code, Code.FailedPrecondition);
  t.regex(ready.rawMessage, /^worker w1 is READY: only a DOWN worker can be removed/);
  t.is((await errorOf(nodes.removeNode({ name: "nope" }))).code, Code.NotFound);

  // Gone: DISCONNECTED, then DOWN after the down grace; its task runs on w2 meanwhile.
  w1.disconnect();
  await eventually(() => {
    if (h.cp.workers.get("w1")?.status !== WorkerStatus.DISCONNECTED) throw new Error("not yet");
  });
  clock.advance(60_000);
  await eventually(() => {
    if (h.cp.workers.get("w1")?.status !== WorkerStatus.DOWN) throw new Error("not DOWN");
  });
  const moved = await reach(h, "t", TaskState.RUNNING, 2n);
  t.is(moved.workerId, "w2");
  await eventually(() => {
    if ((h.cp.workers.get("w1")?.tasks.size ?? 0) > 0) throw new Error("still holds t");
  });

  const { node } = await nodes.removeNode({ name: "w1" });
  t.is(node?.worker?.id, "w1");
  t.is(node?.worker?.status, WorkerStatus.DOWN);
  t.deepEqual(
    (await nodes.listNodes({})).nodes.map((n) => n.worker?.id),
    ["w2"],
  );
  t.deepEqual(
    (await h.workers.listWorkers({})).workers.map((w) => w.id),
    ["w2"],
  );
  t.is((await errorOf(h.workers.getWorker({ id: "w1" }))).code, Code.NotFound);
  const last = await watch.removed();
  t.is(last.worker?.id, "w1");
  t.is(last.worker?.status, WorkerStatus.DOWN, "as it was");
  t.is(watch.messages.filter((x) => x.removed).length, 1);

  // A restart on the same store: still gone.
  h = await h.restart();
  nodes = createClient(NodeService, h.transport);
  t.deepEqual(
    (await nodes.listNodes({})).nodes.map((n) => n.worker?.id),
    ["w2"],
  );
  // Its agent dials in again: a new worker, READY, with nothing of the old one.
  const back = new FakeWorker("w1");
  await back.connect(h.transport);
  const again = h.cp.workers.get("w1");
  t.is(again?.status, WorkerStatus.READY);
  t.false(again?.cordoned);
});

test("the LevelDB store forgets a removed worker's records, its node record too", async (t) => {
  const dir = await tempDir(t);
  const writer = await LevelStore.open(dir);
  await writer.load();
  for (const id of ["gone", "kept"]) {
    writer.putWorker({ worker: create(WorkerSchema, { id, name: id }), lastUpdateSeq: 3n });
    writer.putNode(create(NodeRecordSchema, { workerId: id, cordoned: true }));
  }
  await writer.flush();
  writer.deleteWorker("gone");
  await writer.flush();
  await writer.close();
  const reader = await LevelStore.open(dir);
  t.teardown(() => reader.close());
  const loaded = await reader.load();
  t.deepEqual(
    loaded.workers.map((w) => w.worker.id),
    ["kept"],
  );
  t.deepEqual(
    loaded.nodes.map((n) => n.workerId),
    ["kept"],
  );
});

test("cube node rm: refused while the worker is READY (exit 1, the manager's words); removed once it is DOWN", async (t) => {
  const cluster = new Cluster(t, await tempDir(t));
  const m = await cluster.startManager();
  const w = await cluster.startWorker("w1");
  const env = cubeEnv({ CUBE_MANAGER: m.address, CUBE_TOKEN: m.token as string });
  const refused = await cube(["node", "rm", "w1"], { env });
  t.is(refused.code, 1, refused.stderr);
  t.regex(refused.stderr, /worker w1 .* is READY: only a DOWN worker can be removed/);
  await w.kill9();
  const nodes = createClient(NodeService, grpcTransport(m.address, { token: m.token }));
  await eventually(async () => {
    const [n] = (await nodes.listNodes({})).nodes;
    if (n?.worker?.status !== WorkerStatus.DOWN) throw new Error(`${n?.worker?.status}`);
  }, 20_000);
  const removed = await cube(["node", "rm", "w1"], { env });
  t.is(removed.code, 0, removed.stderr);
  t.is(removed.stdout, "w1: removed\n");
  const listed = await cube(["nodes", "-o", "json"], { env });
  t.is(listed.code, 0, listed.stderr);
  t.deepEqual(JSON.parse(listed.stdout).workers ?? [], []);
});
