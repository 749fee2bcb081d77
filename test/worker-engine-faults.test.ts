/**
 * The worker against an engine that misbehaves in one precise way, through a proxy in
 * front of the real Docker engine (test/docker-fault-proxy.ts): a stop refused during the
 * recovery at start, a container listing cut once while pings succeed, a shutdown while the
 * engine is away, an inspect refused right after a start. Real worker processes (kill -9,
 * SIGTERM), real containers, the test manager on real sockets.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import test, { type ExecutionContext } from "ava";
import { TaskSpecSchema, TaskState } from "../gen/cube/v1/task_pb.js";
import { createDockerDriver } from "../worker/docker/driver.js";
import { EXIT_INSPECT_TIMEOUT_MS } from "../worker/docker/exit-watcher.js";
import { DriverError } from "../worker/tasks/driver.js";
import { type DockerFaultProxy, dockerFaultProxy } from "./docker-fault-proxy.js";
import { docker, HTTP_IMAGE, removeContainers, requireDocker, tempDir } from "./fixtures.js";
import { TestManager } from "./test-manager.js";
import { spawnWorker, type WorkerProcess } from "./worker-process.js";

test.before(() => requireDocker());

const web = { image: HTTP_IMAGE, ports: [{ containerPort: 80 }] };

interface Bed {
  manager: TestManager;
  proxy: DockerFaultProxy;
  dataDir: string;
  start(): Promise<WorkerProcess>;
}

async function bed(t: ExecutionContext): Promise<Bed> {
  const dir = await tempDir(t);
  const proxy = await dockerFaultProxy(dir);
  t.teardown(() => proxy.close());
  const manager = await TestManager.start();
  t.teardown(() => manager.close());
  const dataDir = `${dir}/worker`;
  let last: WorkerProcess | undefined;
  t.teardown(() => {
    if (!t.passed && last) t.log(last.log().slice(-4000));
  });
  return {
    manager,
    proxy,
    dataDir,
    async start() {
      const connections = manager.connections;
      last = await spawnWorker(t, {
        manager: manager.address,
        dataDir,
        env: { CUBE_DOCKER_HOST: proxy.host },
        timeoutMs: 60_000,
      });
      await manager.waitFor(
        () => manager.connected && manager.connections > connections,
        20_000,
        "the worker connected",
      );
      return last;
    },
  };
}

const update = (taskId: string, state: TaskState) => (u: { taskId: string; state: TaskState }) =>
  u.taskId === taskId && u.state === state;

/** A first worker, and task `id` RUNNING on it. */
async function runningOnFirst(b: Bed, id: string) {
  const first = await b.start();
  b.manager.run({ id, spec: web });
  const running = await b.manager.waitForUpdate(update(id, TaskState.RUNNING), 20_000, "RUNNING");
  return { first, running };
}

async function kill9(w: WorkerProcess): Promise<void> {
  w.child.kill("SIGKILL");
  await w.exited;
}

test.serial(
  "a stop the engine refuses during the recovery at start does not keep the worker from starting; it is finished once the engine takes it",
  async (t) => {
    const b = await bed(t);
    const { first, running } = await runningOnFirst(b, "refused");
    const containerId = running.update.containerId;
    // Docker's own words when a kill gets no exit event.
    b.proxy.rules.push({
      method: "POST",
      path: /^\/containers\/[^/]+\/stop$/,
      fault: "error",
      status: 500,
      message: "tried to kill container, but did not receive an exit event",
    });
    b.manager.stop("refused", 1000);
    await b.manager.waitFor(() => b.proxy.faulted.length > 0, 10_000, "the refused stop");
    await kill9(first);
    // The record says "stop it"; the engine refuses again at start.
    const second = await b.start();
    t.true(second.child.exitCode === null, "the worker runs");
    await b.manager.waitFor(
      () => second.log().includes("recovery (finish-stop) failed"),
      10_000,
      "the failed step logged",
    );
    t.is((await docker.getContainer(containerId).inspect()).State.Running, true);
    b.proxy.rules.length = 0;
    const stopped = await b.manager.waitForUpdate(
      update("refused", TaskState.COMPLETED),
      40_000,
      "COMPLETED once the engine takes the stop",
    );
    t.is(stopped.update.reason, "stopped");
    await t.throwsAsync(docker.getContainer(containerId).inspect(), {
      message: /no such container/i,
    });
  },
);

test.serial(
  "a container listing cut once at start, while pings succeed, is retried: the re-adopted task's exit is reported",
  async (t) => {
    const b = await bed(t);
    const { first, running } = await runningOnFirst(b, "listed");
    await kill9(first);
    b.proxy.rules.push({ method: "GET", path: /^\/containers\/json$/, fault: "cut", times: 1 });
    await b.start();
    t.deepEqual(b.proxy.faulted, ["GET /containers/json"]);
    // Killed from outside: only a worker that follows the container again reports it.
    await docker.getContainer(running.update.containerId).kill();
    const failed = await b.manager.waitForUpdate(
      (u) => u.taskId === "listed" && u.state === TaskState.FAILED,
      20_000,
      "the exit reported",
    );
    t.is(failed.update.exitCode, 137);
  },
);

test.serial(
  "a worker stopped (SIGTERM) while a start waits for the engine does not record the task FAILED",
  async (t) => {
    const b = await bed(t);
    const first = await b.start();
    await b.manager.waitFor(() => b.manager.messages("inventory").length > 0, 10_000, "inventory");
    // The engine goes away: every new request to it is cut (the worker's event stream,
    // opened before, stays).
    for (const method of ["GET", "HEAD", "POST", "DELETE"]) {
      b.proxy.rules.push({ method, path: /.*/, fault: "cut" });
    }
    b.manager.run({ id: "waiting", spec: web });
    await b.manager.waitFor(
      () => first.log().includes("container engine unavailable while starting"),
      15_000,
      "the start waiting for the engine",
    );
    first.child.kill("SIGTERM");
    await first.exited;
    b.proxy.rules.length = 0;
    const connections = b.manager.connections;
    await b.start();
    await b.manager.waitFor(
      () => b.manager.connections > connections && b.manager.messages("inventory").length > 1,
      15_000,
      "the restarted worker's inventory",
    );
    // An outbox replay would come right after the connect.
    await new Promise((r) => setTimeout(r, 2000));
    const states = b.manager
      .messages("update")
      .filter((u) => u.taskId === "waiting")
      .map((u) => TaskState[u.state]);
    t.false(states.includes("FAILED"), `updates of the task that waited: ${states.join(", ")}`);
  },
);

test("an inspect refused right after a start fails it and leaves no container behind", async (t) => {
  const dir = await tempDir(t);
  const proxy = await dockerFaultProxy(dir);
  t.teardown(() => proxy.close());
  const driver = createDockerDriver({ dockerHost: proxy.host });
  t.teardown(() => driver.close());
  const workerId = `test-faults-${randomUUID()}`;
  t.teardown(() => removeContainers(`cube.worker=${workerId}`));
  proxy.rules.push({
    method: "GET",
    path: /^\/containers\/[^/]+\/json$/,
    fault: "error",
    status: 500,
    message: "injected inspect failure",
    times: 1,
  });
  const error = await t.throwsAsync(
    driver.start({
      taskId: "inspected",
      generation: 1n,
      workerId,
      spec: create(TaskSpecSchema, { image: HTTP_IMAGE }),
    }),
    { instanceOf: DriverError },
  );
  t.is((error as DriverError).kind, "runtime");
  t.regex(error?.message ?? "", /injected inspect failure/);
  t.deepEqual(proxy.faulted.length, 1);
  const left = await docker.listContainers({
    all: true,
    filters: { label: [`cube.worker=${workerId}`] },
  });
  t.deepEqual(left, [], "a container was left running");
});

test("an inspect that hangs after one container's exit does not hold back the exits after it", async (t) => {
  const dir = await tempDir(t);
  const proxy = await dockerFaultProxy(dir);
  t.teardown(() => proxy.close());
  const driver = createDockerDriver({ dockerHost: proxy.host });
  t.teardown(() => driver.close());
  const workerId = `test-faults-${randomUUID()}`;
  t.teardown(() => removeContainers(`cube.worker=${workerId}`));
  const start = (taskId: string) =>
    driver.start({
      taskId,
      generation: 1n,
      workerId,
      spec: create(TaskSpecSchema, { image: HTTP_IMAGE }),
    });
  const first = await start("first");
  const second = await start("second");
  const waits = [driver.wait(first.containerId), driver.wait(second.containerId)];
  proxy.rules.push({
    method: "GET",
    path: new RegExp(`^/containers/${first.containerId}/json$`),
    fault: "hang",
  });
  await docker.getContainer(first.containerId).kill();
  await docker.getContainer(second.containerId).kill();
  const began = Date.now();
  const [a, b] = await Promise.all(waits);
  const ms = Date.now() - began;
  const bound = EXIT_INSPECT_TIMEOUT_MS + 5000;
  t.log(
    `both exits settled ${ms} ms after the kills (inspect deadline ${EXIT_INSPECT_TIMEOUT_MS} ms, bound ${bound} ms)`,
  );
  t.is(a.exitCode, 137);
  t.is(b.exitCode, 137);
  t.true(proxy.faulted.length >= 1, "the first inspect was held");
  t.true(ms < bound, `took ${ms} ms`);
});
