/**
 * Faults of a real `cube worker` process on the real Docker engine: kill -9 and
 * restart (re-adoption, no duplicate, deaths while down reported, outbox kept), a stream
 * cut while containers end (nothing lost, order kept), and a graceful SIGTERM.
 */
import type { Readable } from "node:stream";
import test, { type ExecutionContext } from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { AssignmentAction } from "../gen/cube/v1/worker_service_pb.js";
import { docker, HTTP_IMAGE, requireDocker, tempDir } from "./fixtures.js";
import { TestManager } from "./test-manager.js";
import { spawnWorker, type WorkerProcess } from "./worker-process.js";

test.before(async () => {
  await requireDocker();
});

const web = { image: HTTP_IMAGE, ports: [{ containerPort: 80 }] };

async function start(t: ExecutionContext, manager: TestManager, dataDir: string) {
  const worker = await spawnWorker(t, { manager: manager.address, dataDir });
  t.teardown(() => {
    if (!t.passed) t.log(worker.log());
  });
  return worker;
}

async function kill9(worker: WorkerProcess): Promise<void> {
  worker.child.kill("SIGKILL");
  const { signal } = await worker.exited;
  if (signal !== "SIGKILL") throw new Error(`worker exited with ${signal}, not SIGKILL`);
}

const containersOf = async (taskId: string) =>
  docker.listContainers({ all: true, filters: { label: [`cube.task=${taskId}`] } });

const inventoryOn = (manager: TestManager, connection: number) =>
  manager.waitFor(
    () => {
      const r = manager.received.find(
        (x) => x.connection === connection && x.message.case === "inventory",
      );
      return r?.message.case === "inventory" ? r.message.value : undefined;
    },
    20_000,
    `the inventory of connection ${connection}`,
  );

/** A first worker process on a fresh data dir, running task `id` (generation `generation`). */
async function runOnFirst(
  t: ExecutionContext,
  manager: TestManager,
  id: string,
  generation: bigint,
) {
  const dataDir = await tempDir(t);
  const first = await start(t, manager, dataDir);
  await inventoryOn(manager, 1);
  manager.run({ id, spec: web, generation });
  const { update } = await manager.waitForUpdate(
    (u) => u.taskId === id && u.state === TaskState.RUNNING,
    15_000,
    "RUNNING",
  );
  return { dataDir, first, update };
}

test("kill -9 and restart: the same container is adopted, never a second; the outbox survives", async (t) => {
  const manager = await TestManager.start({ autoAck: false });
  t.teardown(() => manager.close());
  const { dataDir, first, update } = await runOnFirst(t, manager, "keep", 4n);
  // Never acknowledged, and the manager "loses" it: the worker must still have it.
  await kill9(first);
  manager.lastSeq.clear();
  t.true((await docker.getContainer(update.containerId).inspect()).State.Running);

  const second = await start(t, manager, dataDir);
  t.is(second.id, first.id);
  const inventory = await inventoryOn(manager, 2);
  t.deepEqual(
    inventory.items.map((i) => [i.taskId, i.generation, TaskState[i.state], i.containerId]),
    [["keep", 4n, "RUNNING", update.containerId]],
  );
  const replayed = manager.received.filter(
    (r) => r.connection === 2 && r.message.case === "update" && r.message.value.seq === update.seq,
  );
  t.is(replayed.length, 1, "the unacknowledged RUNNING update is sent again");

  // The same assignment again changes nothing: still one container.
  manager.run({ id: "keep", spec: web, generation: 4n });
  await manager.waitFor(
    () =>
      manager.received.find(
        (r) =>
          r.connection === 2 &&
          r.message.case === "assignmentAck" &&
          r.message.value.action === AssignmentAction.RUN,
      ),
    10_000,
    "the ack",
  );
  const containers = await containersOf("keep");
  t.is(containers.length, 1);
  t.is(containers[0]?.Id, update.containerId);

  // And it is watched again: a kill from outside is still seen.
  await docker.getContainer(update.containerId).kill();
  const failed = await manager.waitForUpdate(
    (u) => u.taskId === "keep" && u.state === TaskState.FAILED,
    5000,
    "FAILED after re-adoption",
  );
  t.is(failed.update.generation, 4n);
});

test("containers that died while the worker was down are reported on restart", async (t) => {
  const manager = await TestManager.start();
  t.teardown(() => manager.close());
  const dataDir = await tempDir(t);
  const first = await start(t, manager, dataDir);
  await inventoryOn(manager, 1);
  manager.run({ id: "dies", spec: web });
  manager.run({ id: "lives", spec: web });
  manager.run({ id: "removed", spec: web });
  await manager.waitFor(
    () => manager.stored.filter((u) => u.state === TaskState.RUNNING).length === 3,
    15_000,
    "3 RUNNING",
  );
  const idOf = (task: string) => manager.stored.find((u) => u.taskId === task)?.containerId ?? "";
  await kill9(first);
  await docker.getContainer(idOf("dies")).kill();
  await docker.getContainer(idOf("removed")).remove({ force: true });

  await start(t, manager, dataDir);
  const inventory = await inventoryOn(manager, 2);
  const states = Object.fromEntries(inventory.items.map((i) => [i.taskId, TaskState[i.state]]));
  t.deepEqual(states, { dies: "FAILED", lives: "RUNNING", removed: "FAILED" });
  const dies = manager.stored.find((u) => u.taskId === "dies" && u.state === TaskState.FAILED);
  t.is(dies?.exitCode, 137);
  const removed = manager.stored.find(
    (u) => u.taskId === "removed" && u.state === TaskState.FAILED,
  );
  t.regex(removed?.reason ?? "", /disappeared/);
  t.is((await containersOf("lives")).length, 1);
  t.deepEqual(manager.violations, []);
});

test("stream cut and restored while containers end: no update lost, order kept", async (t) => {
  const manager = await TestManager.start();
  t.teardown(() => manager.close());
  const worker = await start(t, manager, await tempDir(t));
  await inventoryOn(manager, 1);
  // Each ends on its own, one after another, while the manager is away. The first sleep is
  // long: under load the five containers started up to 1.4 s apart, and the first ended
  // before the last was RUNNING, with the manager still there.
  const ids = ["e1", "e2", "e3", "e4", "e5"];
  ids.forEach((id, i) => {
    manager.run({
      id,
      spec: { image: HTTP_IMAGE, command: ["sh", "-c", `sleep ${5 + i * 0.3}; exit ${10 + i}`] },
    });
  });
  await manager.waitFor(
    () => manager.stored.filter((u) => u.state === TaskState.RUNNING).length === ids.length,
    15_000,
    "all RUNNING",
  );
  // Docker's own order of the deaths, which the worker promises to keep (its exit watcher
  // settles exits in event order): FinishedAt times can disagree with it by tens of ms
  // under load, so they are not the yardstick.
  const containerTask = new Map(
    manager.stored
      .filter((u) => u.state === TaskState.RUNNING)
      .map((u) => [u.containerId, u.taskId] as const),
  );
  const dieOrder: string[] = [];
  const events = (await docker.getEvents({
    filters: { type: ["container"], event: ["die"] },
  })) as unknown as Readable;
  t.teardown(() => events.destroy());
  let partial = "";
  events.on("data", (chunk: Buffer) => {
    const lines = (partial + chunk.toString("utf8")).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      if (!line.trim()) continue;
      const task = containerTask.get((JSON.parse(line) as { id?: string }).id ?? "");
      if (task) dieOrder.push(task);
    }
  });
  await manager.stopServer();
  const downAt = Date.now();
  // Wait until every container has exited, with the manager unreachable.
  for (const id of ids) {
    for (;;) {
      const [c] = await containersOf(id);
      if (c && c.State !== "running") break;
      if (Date.now() - downAt > 15_000) throw new Error(`${id} did not exit`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  t.is(manager.stored.filter((u) => u.state === TaskState.FAILED).length, 0);
  await manager.restart();
  await manager.waitFor(
    () => manager.stored.filter((u) => u.state === TaskState.FAILED).length === ids.length,
    15_000,
    "every FAILED update",
  );
  const failed = manager.stored.filter((u) => u.state === TaskState.FAILED);
  t.deepEqual(
    failed.map((u) => [u.taskId, u.exitCode]).sort(),
    ids.map((id, i) => [id, 10 + i]),
  );
  // In the order Docker reported the deaths (start times vary under load, so ask Docker).
  t.deepEqual(
    failed.map((u) => u.taskId),
    dieOrder,
    "reported in the order Docker's events gave the deaths",
  );
  t.deepEqual(manager.violations, []);
  const seqs = manager.stored.map((u) => u.seq);
  t.deepEqual(
    seqs,
    seqs.map((_, i) => BigInt(i + 1)),
  );
  t.true(manager.connections >= 2);
  t.is(worker.child.exitCode, null, "the worker is still up");
});

test("SIGTERM: graceful exit 0, containers keep running, the next start adopts them", async (t) => {
  const manager = await TestManager.start();
  t.teardown(() => manager.close());
  const dataDir = await tempDir(t);
  const first = await start(t, manager, dataDir);
  await inventoryOn(manager, 1);
  manager.run({ id: "stays", spec: web });
  const { update } = await manager.waitForUpdate(
    (u) => u.taskId === "stays" && u.state === TaskState.RUNNING,
    15_000,
    "RUNNING",
  );
  const termAt = Date.now();
  first.child.kill("SIGTERM");
  const exit = await first.exited;
  t.log(`SIGTERM → exit: ${Date.now() - termAt} ms`);
  t.is(exit.code, 0);
  t.regex(first.log(), /worker stopped; containers left running/);
  t.true((await docker.getContainer(update.containerId).inspect()).State.Running);
  await start(t, manager, dataDir);
  const inventory = await inventoryOn(manager, 2);
  t.deepEqual(
    inventory.items.map((i) => [i.taskId, i.containerId, TaskState[i.state]]),
    [["stays", update.containerId, "RUNNING"]],
  );
  t.is((await containersOf("stays")).length, 1);
});

test("a second worker process on the same data dir exits 1 with a clear message", async (t) => {
  const manager = await TestManager.start();
  t.teardown(() => manager.close());
  const dataDir = await tempDir(t);
  await start(t, manager, dataDir);
  const error = await t.throwsAsync(spawnWorker(t, { manager: manager.address, dataDir }));
  t.regex(error?.message ?? "", /exited \(1\)/);
  t.regex(error?.message ?? "", /data dir .* is in use by another worker/);
});

test("a look-alike with the task's labels is neither adopted nor removed after a restart", async (t) => {
  const manager = await TestManager.start();
  t.teardown(() => manager.close());
  const { dataDir, first, update } = await runOnFirst(t, manager, "porta", 1n);
  // What `docker commit` + `docker run --name qa-debug` makes: every cube.* label, another name.
  const real = await docker.getContainer(update.containerId).inspect();
  const copy = await docker.createContainer({
    name: `qa-debug-${first.id.slice(0, 8)}`,
    Image: HTTP_IMAGE,
    Labels: real.Config.Labels,
  });
  t.teardown(() => copy.remove({ force: true }).catch(() => undefined));
  await copy.start();

  await kill9(first);
  const second = await start(t, manager, dataDir);
  const inventory = await inventoryOn(manager, 2);
  t.deepEqual(
    inventory.items.map((i) => [i.taskId, TaskState[i.state], i.containerId]),
    [["porta", "RUNNING", update.containerId]],
    "the task's own container is re-adopted",
  );
  t.true((await docker.getContainer(update.containerId).inspect()).State.Running);
  t.true((await copy.inspect()).State.Running, "the look-alike is left alone");
  // The recovery ran before the inventory went out, so its warning is in the log already.
  const warnings = second.log().match(/"msg":"container qa-debug-\S+ carries cube's labels/g);
  t.is(warnings?.length, 1, "the look-alike is named in one warning");
  t.false(second.log().includes("removing a stale container"));
});
