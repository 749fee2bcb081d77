/**
 * The worker ⇄ manager protocol, with the worker in-process on the hollow driver (no
 * containers) against the test manager over real sockets: registration, assignments and
 * acks, idempotence, replay of unacknowledged updates across cuts and restarts, and
 * bad input that must not stop the worker.
 */
import { connect, createServer as createNetServer, type Socket } from "node:net";
import { create } from "@bufbuild/protobuf";
import test, { type ExecutionContext } from "ava";
import { createHollowDriver } from "../bench/hollow-driver.js";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { AssignmentAction, AssignmentSchema } from "../gen/cube/v1/worker_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { startWorker } from "../worker/index.js";
import type { Driver } from "../worker/tasks/driver.js";
import { TEST_SANDBOXES, tempDir } from "./fixtures.js";
import { TestManager } from "./test-manager.js";

const logger = createLogger("worker-test", process.env.CUBE_LOG_LEVEL ?? "silent");
const spec = { image: "hollow/app:1", ports: [{ containerPort: 80 }] };

async function setup(
  t: ExecutionContext,
  options: { autoAck?: boolean; dataDir?: string; driver?: Driver } = {},
) {
  const manager = await TestManager.start({ autoAck: options.autoAck });
  t.teardown(() => manager.close());
  const dataDir = options.dataDir ?? (await tempDir(t));
  const driver = options.driver ?? createHollowDriver();
  const worker = await startWorker({
    ...TEST_SANDBOXES,
    manager: manager.address,
    listen: "127.0.0.1:0",
    dataDir,
    driver,
    logger,
    labels: { zone: "a" },
    name: "w1",
    capacity: { cpu: 2 },
  });
  t.teardown(() => worker.close());
  await manager.waitFor(() => manager.messages("inventory").length > 0, 5000, "the inventory");
  return { manager, worker, dataDir, driver };
}

const ackOf = (m: TestManager, taskId: string, action = AssignmentAction.RUN) =>
  m.waitFor(
    () => m.messages("assignmentAck").find((a) => a.taskId === taskId && a.action === action),
    5000,
    `ack of ${taskId}`,
  );

test("registers with id, name, address, capacity and labels, then sends its inventory", async (t) => {
  const { manager, worker } = await setup(t);
  const [register] = manager.messages("register");
  t.is(register?.workerId, worker.id);
  t.is(register?.name, "w1");
  t.is(register?.address, worker.address);
  t.is(register?.capacity?.cpu, 2);
  t.true((register?.capacity?.memoryBytes ?? 0n) > 0n);
  t.deepEqual(register?.labels, { zone: "a" });
  t.truthy(register?.version);
  const kinds = manager.received.map((r) => r.message.case);
  t.deepEqual(kinds.slice(0, 2), ["register", "inventory"]);
  // Idle, it still says something every heartbeat interval (500 ms).
  await manager.waitFor(() => manager.messages("heartbeat").length >= 2, 3000, "heartbeats");
  t.pass();
});

test("RUN → RUNNING update then ack; RUN again is only acked; STOP → COMPLETED stopped", async (t) => {
  const { manager } = await setup(t);
  manager.run({ id: "t1", spec, generation: 3n });
  const running = await manager.waitForUpdate(
    (u) => u.taskId === "t1" && u.state === TaskState.RUNNING,
    5000,
    "RUNNING",
  );
  t.is(running.update.generation, 3n);
  t.truthy(running.update.containerId);
  t.is(running.update.ports[0]?.containerPort, 80);
  t.true((running.update.ports[0]?.hostPort ?? 0) > 0);
  await ackOf(manager, "t1");
  const ackIndex = manager.received.findIndex((r) => r.message.case === "assignmentAck");
  const updateIndex = manager.received.findIndex((r) => r.message.case === "update");
  t.true(updateIndex < ackIndex, "the update goes up before the ack");

  // Same and older generations: acked again, nothing else happens.
  manager.run({ id: "t1", spec, generation: 3n });
  manager.run({ id: "t1", spec, generation: 2n });
  await manager.waitFor(() => manager.messages("assignmentAck").length >= 3, 5000, "three acks");
  t.is(manager.messages("update").length, 1);

  manager.stop("t1");
  const stopped = await manager.waitForUpdate(
    (u) => u.taskId === "t1" && u.state === TaskState.COMPLETED,
    5000,
    "COMPLETED",
  );
  t.is(stopped.update.reason, "stopped");
  t.is(stopped.update.generation, 3n);
  t.false((await ackOf(manager, "t1", AssignmentAction.STOP)).notHeld, "it held t1");
  t.deepEqual(manager.violations, []);
  t.deepEqual(
    manager.stored.map((u) => u.seq),
    [1n, 2n],
  );
});

test("a newer generation replaces the container of the older one", async (t) => {
  const { manager } = await setup(t);
  manager.run({ id: "t1", spec, generation: 1n });
  const first = await manager.waitForUpdate((u) => u.generation === 1n, 5000, "g1 RUNNING");
  manager.run({ id: "t1", spec, generation: 2n });
  const second = await manager.waitForUpdate((u) => u.generation === 2n, 5000, "g2 RUNNING");
  t.is(second.update.state, TaskState.RUNNING);
  t.not(second.update.containerId, first.update.containerId);
  // The replaced container's exit is not reported as the task ending.
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(
    manager.stored.map((u) => [u.generation, TaskState[u.state]]),
    [
      [1n, "RUNNING"],
      [2n, "RUNNING"],
    ],
  );
});

test("bad input: no task id, unknown action, no image, STOP of an unknown task — the worker keeps serving", async (t) => {
  const { manager } = await setup(t);
  manager.send({
    case: "assignment",
    value: create(AssignmentSchema, { action: AssignmentAction.RUN }),
  });
  manager.send({
    case: "assignment",
    value: create(AssignmentSchema, { action: 7 as AssignmentAction, task: { id: "weird" } }),
  });
  manager.run({ id: "noimage", spec: { image: "" } });
  manager.run({ id: "badport", spec: { image: "x", ports: [{ containerPort: 70000 }] } });
  manager.stop("nobody");
  const failed = await manager.waitForUpdate((u) => u.taskId === "noimage", 5000, "FAILED");
  t.is(failed.update.state, TaskState.FAILED);
  t.regex(failed.update.reason, /image is required/);
  const badPort = await manager.waitForUpdate((u) => u.taskId === "badport", 5000, "FAILED");
  t.regex(badPort.update.reason, /container port 70000/);
  // Nothing to stop, and no update will say so: the ack tells the manager it held nothing.
  t.true((await ackOf(manager, "nobody", AssignmentAction.STOP)).notHeld);
  // Still serving.
  manager.run({ id: "fine", spec });
  const ok = await manager.waitForUpdate((u) => u.taskId === "fine", 5000, "RUNNING");
  t.is(ok.update.state, TaskState.RUNNING);
  t.false(manager.stored.some((u) => u.taskId === "nobody" || u.taskId === "weird"));
});

test("a container that ends while the stream is cut is reported on reconnect, in order, none lost", async (t) => {
  const driver = createHollowDriver();
  const { manager } = await setup(t, { driver });
  const ids = ["a", "b", "c", "d"];
  for (const id of ids) manager.run({ id, spec });
  await manager.waitFor(() => manager.stored.length === ids.length, 5000, "4 RUNNING");
  const containers = new Map(manager.stored.map((u) => [u.taskId, u.containerId]));
  await manager.stopServer();
  // The containers end while the worker cannot reach the manager: it must keep them.
  for (const id of ids) await driver.stop(containers.get(id) ?? "", 0);
  await new Promise((r) => setTimeout(r, 300));
  await manager.restart();
  await manager.waitFor(
    () => manager.received.some((r) => r.connection === 2 && r.message.case === "inventory"),
    10_000,
    "the inventory after the reconnect",
  );
  const ended = manager.stored.slice(ids.length);
  t.deepEqual(
    ended.map((u) => u.taskId),
    ids,
  );
  t.true(ended.every((u) => u.state === TaskState.FAILED && u.exitCode === 143));
  t.deepEqual(manager.violations, []);
  // Order on the wire: register, the replayed updates, then the inventory.
  const second = manager.received.filter((r) => r.connection === 2).map((r) => r.message.case);
  t.deepEqual(second.slice(0, 6), [
    "register",
    "update",
    "update",
    "update",
    "update",
    "inventory",
  ]);
});

test("unacknowledged updates are replayed after a cut, and survive a worker restart", async (t) => {
  const dataDir = await tempDir(t);
  const { manager, worker } = await setup(t, { autoAck: false, dataDir });
  manager.run({ id: "t1", spec });
  manager.run({ id: "t2", spec });
  await manager.waitFor(() => manager.stored.length === 2, 5000, "2 updates");
  // Acknowledge only the first, and let the manager "lose" the second: it must come again.
  manager.ack(1n);
  await new Promise((r) => setTimeout(r, 100));
  manager.lastSeq.set(worker.id, 1n);
  manager.cut();
  const sentTwice = () =>
    manager.messages("update").filter((u) => u.seq === 2n).length === 2 ? true : undefined;
  await manager.waitFor(sentTwice, 5000, "the replay of seq 2");
  t.is(manager.messages("update").filter((u) => u.seq === 1n).length, 1);
  // Restart the worker with update 2 still unacknowledged (the test manager forgets it).
  await worker.close();
  manager.lastSeq.clear();
  manager.stored.length = 0;
  const again = await startWorker({
    ...TEST_SANDBOXES,
    manager: manager.address,
    listen: "127.0.0.1:0",
    dataDir,
    driver: createHollowDriver(),
    logger,
  });
  t.teardown(() => again.close());
  t.is(again.id, worker.id, "the id is kept in the data dir");
  await manager.waitFor(() => manager.stored.some((u) => u.seq === 2n), 5000, "seq 2 again");
  t.false(
    manager.stored.some((u) => u.seq === 1n),
    "an acknowledged update is not sent again",
  );
});

test("Registered.last_update_seq drops what the manager already has", async (t) => {
  const { manager } = await setup(t, { autoAck: false });
  manager.run({ id: "t1", spec });
  await manager.waitFor(() => manager.stored.length === 1, 5000, "1 update");
  // Never acked, but stored: the next Registered says so.
  manager.cut();
  await manager.waitFor(() => manager.connections === 2 && manager.connected, 5000, "reconnect");
  await manager.waitFor(
    () => manager.received.some((r) => r.connection === 2 && r.message.case === "inventory"),
    5000,
    "the inventory",
  );
  t.is(manager.duplicates.length, 0);
  const inventory = manager.messages("inventory").at(-1);
  t.deepEqual(
    inventory?.items.map((i) => [i.taskId, TaskState[i.state]]),
    [["t1", "RUNNING"]],
  );
});

test("reconnects with back-off while the manager refuses, then registers again", async (t) => {
  const { manager } = await setup(t);
  manager.refuse(800);
  manager.cut();
  const cutAt = Date.now();
  await manager.waitFor(() => manager.connections >= 2 && manager.connected, 8000, "reconnect");
  const took = Date.now() - cutAt;
  t.true(took >= 700, `reconnected after ${took} ms, while refused`);
  t.true(took < 6000, `reconnected after ${took} ms`);
});

test("notices a manager that stops sending heartbeats and dials again", async (t) => {
  const manager = await TestManager.start({ heartbeatIntervalMs: 200 });
  t.teardown(() => manager.close());
  const worker = await startWorker({
    ...TEST_SANDBOXES,
    manager: manager.address,
    listen: "127.0.0.1:0",
    dataDir: await tempDir(t),
    driver: createHollowDriver(),
    logger,
  });
  t.teardown(() => worker.close());
  await manager.waitFor(() => manager.messages("inventory").length > 0, 5000, "inventory");
  // Let it see heartbeats, then go silent (the stream stays open).
  await new Promise((r) => setTimeout(r, 500));
  const silentAt = Date.now();
  manager.muted = true;
  await manager.waitFor(() => manager.connections >= 2, 8000, "a new connection");
  const took = Date.now() - silentAt;
  t.true(took >= 1500 && took < 5000, `redialled ${took} ms after the manager fell silent`);
});

test("a second worker on the same data dir fails with a clear message", async (t) => {
  const { manager, dataDir } = await setup(t);
  const error = await t.throwsAsync(
    startWorker({
      ...TEST_SANDBOXES,
      manager: manager.address,
      listen: "127.0.0.1:0",
      dataDir,
      driver: createHollowDriver(),
      logger,
    }),
  );
  t.regex(error?.message ?? "", /data dir .* is in use by another worker/);
});

test("close() is graceful: flushes, ends the stream, and a restart re-registers with the same id", async (t) => {
  const dataDir = await tempDir(t);
  const { manager, worker } = await setup(t, { dataDir });
  manager.run({ id: "t1", spec });
  await ackOf(manager, "t1");
  const started = Date.now();
  await worker.close();
  t.true(Date.now() - started < 3000, "close took too long");
  await manager.waitFor(() => !manager.connected, 3000, "the stream to end");
  t.pass();
});

/**
 * A TCP proxy whose existing connections can be frozen: bytes stop flowing both ways
 * and nothing is closed, as on a dead network (no FIN, no RST). New connections flow.
 */
async function freezableProxy(target: string) {
  const [host, port] = [target.split(":")[0], Number(target.split(":")[1])];
  const live = new Set<Socket>();
  const server = createNetServer((inbound) => {
    const outbound = connect(port, host);
    const pair = [inbound, outbound];
    for (const s of pair) {
      live.add(s);
      s.on("error", () => undefined);
      s.on("close", () => {
        live.delete(s);
        for (const other of pair) other.destroy();
      });
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    freeze() {
      for (const s of live) {
        s.unpipe();
        s.pause();
      }
      live.clear();
    },
    close() {
      server.close();
    },
  };
}

test("a dead network (no FIN) is noticed through pings and silence, and the worker dials again", async (t) => {
  const manager = await TestManager.start();
  t.teardown(() => manager.close());
  const proxy = await freezableProxy(manager.address);
  t.teardown(() => proxy.close());
  const worker = await startWorker({
    ...TEST_SANDBOXES,
    manager: proxy.address,
    listen: "127.0.0.1:0",
    dataDir: await tempDir(t),
    driver: createHollowDriver(),
    logger,
  });
  t.teardown(() => worker.close());
  await manager.waitFor(() => manager.messages("inventory").length > 0, 5000, "inventory");
  const frozenAt = Date.now();
  proxy.freeze();
  await manager.waitFor(
    () => manager.received.some((r) => r.connection === 2 && r.message.case === "inventory"),
    8000,
    "a second connection",
  );
  const took = Date.now() - frozenAt;
  t.log(`network frozen → registered again: ${took} ms`);
  t.true(took < 5000, `took ${took} ms`);
  // Live again: assignments flow over the new connection.
  manager.run({ id: "after", spec });
  await manager.waitForUpdate((u) => u.taskId === "after", 5000, "RUNNING");
  t.pass();
});
