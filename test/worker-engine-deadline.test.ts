/**
 * The worker's runtime request timeout (`cube worker --runtime-request-timeout`, 1 s here)
 * against an engine that takes a call and never answers it, through the fault proxy in front
 * of the real Docker engine (test/docker-fault-proxy.ts): a create or a start the engine
 * carries out all the same (its container comes late), a create never answered at all, a
 * stop and a removal never answered. Each is abandoned past the deadline and retried, the
 * task's queue moves on (a STOP after the hung call runs), and one task never has two
 * containers, nor leaves one behind. A worker in this process, the test manager on real
 * sockets, real containers.
 */
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import test, { type ExecutionContext } from "ava";
import { pino } from "pino";
import { runCli } from "../cli/run-cli.js";
import { TaskSpecSchema, TaskState } from "../gen/cube/v1/task_pb.js";
import { engineTimeout } from "../worker/docker/deadline.js";
import { createDockerDriver } from "../worker/docker/driver.js";
import { startWorker } from "../worker/index.js";
import { DriverError } from "../worker/tasks/driver.js";
import { captureIo } from "./cli-harness.js";
import { type DockerFaultProxy, type FaultRule, testFaultProxy } from "./docker-fault-proxy.js";
import { docker, HTTP_IMAGE, removeContainers, requireDocker, tempDir } from "./fixtures.js";
import { TestManager } from "./test-manager.js";

test.before(() => requireDocker());

const TIMEOUT_MS = 1000;
const web = { image: HTTP_IMAGE, ports: [{ containerPort: 80 }] };
const CREATE = /^\/containers\/create$/;
const START = /^\/containers\/[^/]+\/start$/;

interface Bed {
  manager: TestManager;
  proxy: DockerFaultProxy;
  /** Puts `faults` in force, then sends RUN of a web server as task `taskId`. */
  run(taskId: string, ...faults: FaultRule[]): void;
  /** The worker's JSON log so far. */
  log(): string;
  /** The containers the engine holds for `taskId` of this worker, running or not. */
  containers(taskId: string): Promise<{ Id: string; State: string }[]>;
}

/** A worker on the fault proxy with a 1 s runtime request timeout, connected to a test manager. */
async function bed(t: ExecutionContext): Promise<Bed> {
  const proxy = await testFaultProxy(t);
  const manager = await TestManager.start();
  t.teardown(() => manager.close());
  let log = "";
  const logger = pino(
    { name: "worker", level: "info" },
    {
      write(line: string) {
        log += line;
      },
    },
  );
  const worker = await startWorker({
    manager: manager.address,
    listen: "127.0.0.1:0",
    dataDir: await tempDir(t),
    dockerHost: proxy.host,
    runtimeRequestTimeoutMs: TIMEOUT_MS,
    // The proxy's faults are aimed at a task's create or start by path: a network sandbox's
    // own create and start (the pool's, in the background) would take them instead.
    warmSandboxes: 0,
    metrics: false,
    logger,
  });
  t.teardown(async () => {
    // Nothing may hang here any more: the rules go first.
    proxy.rules.length = 0;
    await worker.close();
    await removeContainers(`cube.worker=${worker.id}`);
  });
  t.teardown(() => {
    if (!t.passed) t.log(log.slice(-6000));
  });
  await manager.waitFor(() => manager.messages("inventory").length > 0, 10_000, "the inventory");
  return {
    manager,
    proxy,
    run(taskId, ...faults) {
      proxy.rules.push(...faults);
      manager.run({ id: taskId, spec: web });
    },
    log: () => log,
    containers: (taskId) =>
      docker.listContainers({
        all: true,
        filters: { label: [`cube.worker=${worker.id}`, `cube.task=${taskId}`] },
      }),
  };
}

const update = (taskId: string, state: TaskState) => (u: { taskId: string; state: TaskState }) =>
  u.taskId === taskId && u.state === state;

/** The states the worker reported for `taskId`, in order. */
function statesOf(b: Bed, taskId: string): string[] {
  return b.manager
    .messages("update")
    .filter((u) => u.taskId === taskId)
    .map((u) => TaskState[u.state]);
}

/** Sends STOP for `taskId`; it must end COMPLETED "stopped", with no container left. */
async function stopsClean(t: ExecutionContext, b: Bed, taskId: string): Promise<void> {
  b.manager.stop(taskId, 1000);
  const stopped = await b.manager.waitForUpdate(
    update(taskId, TaskState.COMPLETED),
    20_000,
    `${taskId} COMPLETED`,
  );
  t.is(stopped.update.reason, "stopped");
  t.deepEqual(await b.containers(taskId), [], `no container of ${taskId} is left`);
}

async function until(probe: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("a call the engine never answers fails as engine-timeout; the retry adopts the container it made late", async (t) => {
  const proxy = await testFaultProxy(t);
  const driver = createDockerDriver({ dockerHost: proxy.host, requestTimeoutMs: TIMEOUT_MS });
  t.teardown(() => driver.close());
  // Unique in its first 8 characters, which the container's name keeps.
  const workerId = randomUUID();
  t.teardown(() => removeContainers(`cube.worker=${workerId}`));
  const request = {
    taskId: "late",
    generation: 1n,
    workerId,
    spec: create(TaskSpecSchema, { image: HTTP_IMAGE }),
  };
  const listed = () =>
    docker.listContainers({ all: true, filters: { label: [`cube.worker=${workerId}`] } });
  proxy.rules.push({ method: "POST", path: CREATE, fault: "hang", forward: true, times: 1 });
  const began = Date.now();
  const error = await t.throwsAsync(driver.start(request), { instanceOf: DriverError });
  const ms = Date.now() - began;
  t.is((error as DriverError).kind, "engine-timeout");
  t.regex(
    error?.message ?? "",
    /^docker did not answer the create of container cube-late-g1-\w+ within 1s$/,
  );
  t.true(ms >= TIMEOUT_MS && ms < TIMEOUT_MS + 5000, `gave up after ${ms} ms`);
  // The engine makes the container all the same (a busy one may take a while).
  await until(async () => (await listed()).length === 1, 10_000, "the late container");

  // Tried again as the worker does; a busy engine may also miss a deadline of 1 s on its own.
  let info: Awaited<ReturnType<typeof driver.start>> | undefined;
  for (let attempt = 1; !info; attempt++) {
    info = await driver.start(request).catch((again: unknown) => {
      if (attempt < 10 && again instanceof DriverError && again.kind === "engine-timeout") {
        return undefined;
      }
      throw again;
    });
  }
  t.true(info.running);
  t.deepEqual(
    (await listed()).map((c) => c.Id),
    [info.containerId],
    "one container for the assignment",
  );

  await driver.removeAssignment?.(request);
  t.deepEqual(await listed(), [], "found by its labels and removed");
});

test.serial(
  "a create the engine carries out but never answers is retried: the task RUNS in the one container the engine made, and a STOP removes it",
  async (t) => {
    const b = await bed(t);
    b.run("created", { method: "POST", path: CREATE, fault: "hang", forward: true, times: 1 });
    const running = await b.manager.waitForUpdate(
      update("created", TaskState.RUNNING),
      20_000,
      "RUNNING",
    );
    t.deepEqual(b.proxy.faulted, ["POST /containers/create"]);
    t.regex(b.log(), /docker did not answer the create of container cube-created-g1-\w+ within 1s/);
    t.deepEqual(
      (await b.containers("created")).map((c) => c.Id),
      [running.update.containerId],
      "one container for the task",
    );
    t.deepEqual(statesOf(b, "created"), ["RUNNING"]);
    await stopsClean(t, b, "created");
  },
);

test.serial(
  "a STOP sent while a start goes unanswered runs: the start is given up and the container the engine started late is removed",
  async (t) => {
    const b = await bed(t);
    b.run("started", { method: "POST", path: START, fault: "hang", forward: true, times: 1 });
    await b.manager.waitFor(() => b.proxy.faulted.length > 0, 20_000, "the start held");
    // Every later create hangs, so the STOP comes behind a start that cannot finish.
    b.proxy.rules.push({ method: "POST", path: CREATE, fault: "hang" });
    // The engine runs the container, though the worker heard nothing of it.
    await until(
      async () => (await b.containers("started"))[0]?.State === "running",
      10_000,
      "the late container running",
    );
    // Found by its labels and removed.
    await stopsClean(t, b, "started");
    t.deepEqual(statesOf(b, "started"), ["COMPLETED"]);
    t.regex(b.log(), /docker did not answer the start of container \w{12} within 1s/);
    t.regex(b.log(), /start given up for a newer assignment of the task/);
    t.regex(b.log(), /removing the container of a start that was given up/);
  },
);

test.serial(
  "a create never answered, again and again, holds the task's queue one call at most: a STOP still stops the task",
  async (t) => {
    const b = await bed(t);
    b.run("hung", { method: "POST", path: CREATE, fault: "hang" });
    await b.manager.waitFor(() => b.proxy.faulted.length > 0, 20_000, "the create held");
    await stopsClean(t, b, "hung");
    t.deepEqual(statesOf(b, "hung"), ["COMPLETED"], "never RUNNING, never FAILED");
  },
);

test.serial(
  "an image check never answered holds the task's queue one call at most: a STOP still stops the task",
  async (t) => {
    const b = await bed(t);
    b.run("checking", { method: "GET", path: /^\/images\/.+\/json$/, fault: "hang" });
    await b.manager.waitFor(() => b.proxy.faulted.length > 0, 20_000, "the image check held");
    await stopsClean(t, b, "checking");
    // Given up on either way: the STOP cancels the check in flight, or the check's 1 s
    // deadline ran out first.
    t.regex(
      b.log(),
      /the image pull was cancelled|docker did not answer the check for image \S+ within 1s/,
    );
    t.deepEqual(statesOf(b, "checking"), ["COMPLETED"], "never RUNNING, never FAILED");
  },
);

test.serial(
  "a stop and a removal never answered are tried again: the task is stopped and its container removed",
  async (t) => {
    const b = await bed(t);
    b.run("stopping");
    const running = await b.manager.waitForUpdate(
      update("stopping", TaskState.RUNNING),
      20_000,
      "RUNNING",
    );
    const id = running.update.containerId;
    b.proxy.rules.push(
      { method: "POST", path: new RegExp(`^/containers/${id}/stop$`), fault: "hang", times: 1 },
      { method: "DELETE", path: new RegExp(`^/containers/${id}$`), fault: "hang", times: 1 },
    );
    await stopsClean(t, b, "stopping");
    t.deepEqual(b.proxy.faulted, [`POST /containers/${id}/stop`, `DELETE /containers/${id}`]);
    const short = id.slice(0, 12);
    // A stop's deadline comes on top of its grace (1 s here).
    t.regex(b.log(), new RegExp(`docker did not answer the stop of container ${short} within 2s`));
    t.regex(
      b.log(),
      new RegExp(`docker did not answer the removal of container ${short} within 1s`),
    );
    t.deepEqual(statesOf(b, "stopping"), ["RUNNING", "COMPLETED"]);
  },
);

test("--runtime-request-timeout and CUBE_RUNTIME_REQUEST_TIMEOUT take a duration, and say what else they got", async (t) => {
  const run = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const io = captureIo(env);
    const code = await runCli(args, io);
    return { code, stdout: io.out(), stderr: io.err() };
  };
  const flag = await run(["worker", "--runtime-request-timeout", "soon"]);
  t.is(flag.code, 2);
  t.regex(flag.stderr, /"soon" is not a duration: use a number with a unit/);
  // CUBE_SHUTDOWN_TIMEOUT is read after it: were CUBE_RUNTIME_REQUEST_TIMEOUT ignored, that
  // one would be the error (and no worker starts either way).
  const env = await run(["worker"], {
    CUBE_RUNTIME_REQUEST_TIMEOUT: "2 minutes",
    CUBE_SHUTDOWN_TIMEOUT: "never",
  });
  t.not(env.code, 0);
  t.regex(env.stderr, /CUBE_RUNTIME_REQUEST_TIMEOUT: "2 minutes" is not a duration/);
  const help = await run(["worker", "--help"]);
  t.regex(help.stdout, /--runtime-request-timeout <duration>/);
});

test("a timed-out call's message names the call and the deadline as people write it", (t) => {
  const words = (ms: number) => engineTimeout("the start of container x", ms).message;
  t.is(words(120_000), "docker did not answer the start of container x within 2m");
  t.is(words(90_000), "docker did not answer the start of container x within 1m30s");
  t.is(words(1000), "docker did not answer the start of container x within 1s");
  t.is(words(1500), "docker did not answer the start of container x within 1.5s");
  t.is(words(250), "docker did not answer the start of container x within 250ms");
  t.is(engineTimeout("x", 1000).kind, "engine-timeout");
});
