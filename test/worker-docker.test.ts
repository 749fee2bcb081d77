/**
 * A real `cube worker` process on the real Docker engine, driven by the test manager
 * over real sockets: run, stop, a kill from outside, health, bad input, and the
 * worker's own read-only gRPC API.
 */
import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import { MetricsService } from "../gen/cube/v1/metrics_pb.js";
import { HealthStatus, TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { docker, fetchContainer, HTTP_IMAGE, requireDocker, tempDir } from "./fixtures.js";
import { TestManager } from "./test-manager.js";
import { spawnWorker } from "./worker-process.js";

test.before(async () => {
  await requireDocker();
});

async function setup(t: ExecutionContext) {
  const manager = await TestManager.start();
  t.teardown(() => manager.close());
  const worker = await spawnWorker(t, { manager: manager.address, dataDir: await tempDir(t) });
  await manager.waitFor(() => manager.messages("inventory").length > 0, 10_000, "inventory");
  t.teardown(() => {
    if (!t.passed) t.log(worker.log());
  });
  return { manager, worker };
}

const web = { image: HTTP_IMAGE, ports: [{ containerPort: 80 }] };

const stateOf = (taskId: string, state: TaskState) => (u: { taskId: string; state: TaskState }) =>
  u.taskId === taskId && u.state === state;

// The two timed tests run alone (serial tests go first), so the figures they log are the
// worker's, not those of five other worker processes starting on the same cores.
test.serial(
  "run → RUNNING with a published port that answers HTTP; stop → container gone",
  async (t) => {
    const { manager, worker } = await setup(t);
    const sentAt = manager.run({ id: "web", spec: web });
    const { update, at } = await manager.waitForUpdate(
      stateOf("web", TaskState.RUNNING),
      15_000,
      "RUNNING",
    );
    const inside = worker
      .log()
      .split("\n")
      .find((line) => line.includes('"msg":"task RUNNING"'));
    t.log(
      `assignment sent → RUNNING update received: ${at - sentAt} ms ` +
        `(received → RUNNING stored, in the worker: ${JSON.parse(inside ?? "{}").tookMs} ms)`,
    );
    const port = update.ports[0]?.hostPort ?? 0;
    t.true(port > 0);
    t.is(update.ports[0]?.hostIp, "127.0.0.1");
    const res = await fetchContainer(`http://127.0.0.1:${port}/health`);
    t.is(res.status, 200);
    const info = await docker.getContainer(update.containerId).inspect();
    t.is(info.Config.Labels["cube.task"], "web");
    t.is(info.Config.Labels["cube.generation"], "1");

    const stopAt = manager.stop("web", 1000);
    const stopped = await manager.waitForUpdate(
      stateOf("web", TaskState.COMPLETED),
      15_000,
      "COMPLETED",
    );
    t.log(`STOP sent → COMPLETED update received: ${stopped.at - stopAt} ms`);
    t.is(stopped.update.reason, "stopped");
    await t.throwsAsync(docker.getContainer(update.containerId).inspect(), {
      message: /no such container/i,
    });
    t.deepEqual(manager.violations, []);
  },
);

test.serial("a container killed from outside is reported FAILED within 1 s", async (t) => {
  const { manager } = await setup(t);
  manager.run({ id: "victim", spec: web });
  const { update } = await manager.waitForUpdate(
    stateOf("victim", TaskState.RUNNING),
    15_000,
    "RUNNING",
  );
  const killedAt = Date.now();
  await docker.getContainer(update.containerId).kill();
  const failed = await manager.waitForUpdate(stateOf("victim", TaskState.FAILED), 5000, "FAILED");
  const took = failed.at - killedAt;
  t.log(`docker kill → FAILED update received: ${took} ms`);
  t.true(took < 1000, `took ${took} ms`);
  t.is(failed.update.exitCode, 137);
  t.is(failed.update.containerId, update.containerId);
  // The container is kept for its logs until a STOP.
  const info = await docker.getContainer(update.containerId).inspect();
  t.false(info.State.Running);
});

test("a docker restart of a task's container: the task ends, and the container started again is removed", async (t) => {
  const { manager, worker } = await setup(t);
  manager.run({ id: "again", spec: web });
  const { update } = await manager.waitForUpdate(
    stateOf("again", TaskState.RUNNING),
    15_000,
    "RUNNING",
  );
  // SIGTERM, then started again by the engine: before, it ran on untracked, holding the port.
  await docker.getContainer(update.containerId).restart({ t: 1 });
  const ended = await manager.waitForUpdate(
    (u) =>
      u.taskId === "again" && (u.state === TaskState.FAILED || u.state === TaskState.COMPLETED),
    15_000,
    "the end",
  );
  t.is(ended.update.containerId, update.containerId);
  const deadline = Date.now() + 20_000;
  while ((await containerExists(update.containerId)) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  t.false(await containerExists(update.containerId), "the container started again is removed");
  t.regex(
    worker.log(),
    /a container of ended task again \(\w+\) was started outside cube and was removed/,
  );
  t.false(
    manager
      .messages("update")
      .some((u) => u.taskId === "again" && u.state === TaskState.RUNNING && u.seq > update.seq),
    "the task is not brought back",
  );
});

const containerExists = (id: string) =>
  docker
    .getContainer(id)
    .inspect()
    .then(
      () => true,
      () => false,
    );

/** A task that ignores SIGTERM (its init passes it on to a shell that traps it). */
const stubborn = (stopTimeoutMs?: number) => ({
  image: HTTP_IMAGE,
  command: ["sh", "-c", 'trap "" TERM; while :; do sleep 0.1; done'],
  ...(stopTimeoutMs !== undefined && { stopTimeout: durationFromMs(stopTimeoutMs) }),
});

test("stop_timeout: the container keeps it for docker stop, and a newer generation's start waits out the older one's, not 10 s", async (t) => {
  const { manager } = await setup(t);
  manager.run({ id: "slow", spec: stubborn(2000) });
  const first = await manager.waitForUpdate(stateOf("slow", TaskState.RUNNING), 15_000, "RUNNING");
  const info = await docker.getContainer(first.update.containerId).inspect();
  t.is((info.Config as { StopTimeout?: number }).StopTimeout, 2, "docker stop by hand waits 2 s");
  const sentAt = manager.run({ id: "slow", spec: stubborn(2000), generation: 2n });
  const second = await manager.waitForUpdate(
    (u) => u.taskId === "slow" && u.generation === 2n && u.state === TaskState.RUNNING,
    20_000,
    "generation 2 RUNNING",
  );
  const took = second.at - sentAt;
  t.log(`RUN of generation 2 → RUNNING: ${took} ms (the older container ignores SIGTERM, 2 s)`);
  t.true(took >= 1800, `the older container was not given its 2 s (${took} ms)`);
  t.true(took < 8000, `the default 10 s was waited instead (${took} ms)`);
  await t.throwsAsync(docker.getContainer(first.update.containerId).inspect(), {
    message: /no such container/i,
  });
});

test("a STOP whose grace is 0 kills at once a task that ignores SIGTERM", async (t) => {
  const { manager } = await setup(t);
  manager.run({ id: "now", spec: stubborn() });
  await manager.waitForUpdate(stateOf("now", TaskState.RUNNING), 15_000, "RUNNING");
  const stopAt = manager.stop("now", 0);
  const stopped = await manager.waitForUpdate(stateOf("now", TaskState.COMPLETED), 15_000, "done");
  const took = stopped.at - stopAt;
  t.log(`STOP with grace 0 → COMPLETED: ${took} ms`);
  t.true(took < 5000, `took ${took} ms: the 0 was read as the 10 s default`);
});

test("a failing health check is reported UNHEALTHY, a passing one HEALTHY", async (t) => {
  const { manager } = await setup(t);
  manager.run({
    id: "checked",
    spec: {
      ...web,
      healthCheck: {
        path: "/cgi-bin/health",
        interval: durationFromMs(200),
        failureThreshold: 2,
      },
    },
  });
  const { update } = await manager.waitForUpdate(
    stateOf("checked", TaskState.RUNNING),
    15_000,
    "RUNNING",
  );
  await manager.waitFor(
    () => manager.messages("health").find((h) => h.status === HealthStatus.HEALTHY),
    5000,
    "HEALTHY",
  );
  const port = update.ports[0]?.hostPort;
  const sick = await fetchContainer(`http://127.0.0.1:${port}/cgi-bin/sick`);
  t.is(sick.status, 200);
  const sickAt = Date.now();
  const unhealthy = await manager.waitFor(
    () => manager.messages("health").find((h) => h.status === HealthStatus.UNHEALTHY),
    5000,
    "UNHEALTHY",
  );
  t.log(`made sick → UNHEALTHY received: ${Date.now() - sickAt} ms (${unhealthy.message})`);
  t.is(unhealthy.taskId, "checked");
  t.is(unhealthy.generation, 1n);
  t.true(unhealthy.consecutiveFailures >= 2);
  t.regex(unhealthy.message, /HTTP 500/);
});

test("bad input fails the task with a reason and the worker keeps serving", async (t) => {
  const { manager } = await setup(t);
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  t.teardown(() => blocker.close());
  const takenPort = (blocker.address() as { port: number }).port;

  manager.run({ id: "noimage", spec: { image: "127.0.0.1:5000/cube/does-not-exist:1" } });
  manager.run({
    id: "porttaken",
    spec: { image: HTTP_IMAGE, ports: [{ containerPort: 80, hostPort: takenPort }] },
  });
  manager.run({ id: "quick", spec: { image: HTTP_IMAGE, command: ["sh", "-c", "exit 3"] } });
  manager.run({ id: "nocommand", spec: { image: HTTP_IMAGE, command: ["/no/such/binary"] } });

  const noImage = await manager.waitForUpdate(
    stateOf("noimage", TaskState.FAILED),
    20_000,
    "noimage FAILED",
  );
  t.log(`missing image: ${noImage.update.reason}`);
  t.regex(noImage.update.reason, /does-not-exist/);
  const taken = await manager.waitForUpdate(
    stateOf("porttaken", TaskState.FAILED),
    20_000,
    "porttaken FAILED",
  );
  t.log(`taken port: ${taken.update.reason}`);
  t.regex(taken.update.reason, new RegExp(`${takenPort}`));
  const quick = await manager.waitForUpdate(
    stateOf("quick", TaskState.FAILED),
    20_000,
    "quick FAILED",
  );
  t.is(quick.update.exitCode, 3);
  t.regex(quick.update.reason, /exit code 3/);
  const noCommand = await manager.waitForUpdate(
    stateOf("nocommand", TaskState.FAILED),
    20_000,
    "nocommand FAILED",
  );
  t.log(`missing binary: ${noCommand.update.reason}`);

  manager.run({ id: "fine", spec: web });
  await manager.waitForUpdate(stateOf("fine", TaskState.RUNNING), 15_000, "fine RUNNING");
  t.deepEqual(manager.violations, []);
});

test("the worker serves its tasks read-only, its metrics, health and reflection-free UNIMPLEMENTED", async (t) => {
  const { manager, worker } = await setup(t);
  manager.run({ id: "seen", spec: { ...web, name: "seen-web", labels: { tier: "front" } } });
  const { update } = await manager.waitForUpdate(
    stateOf("seen", TaskState.RUNNING),
    15_000,
    "RUNNING",
  );
  await fetchContainer(`http://127.0.0.1:${update.ports[0]?.hostPort}/health`);
  // It answers only the caller holding the secret it gave its manager when it registered.
  const secret = manager.messages("register")[0]?.callSecret ?? "";
  t.true(secret.length >= 32, "a call secret in Register");
  for (const token of [undefined, "not-the-secret"]) {
    const refused = await t.throwsAsync(
      createClient(TaskService, grpcTransport(worker.address, { token })).listTasks({}),
    );
    t.is(ConnectError.from(refused).code, Code.Unauthenticated, `token ${token}`);
    t.regex(ConnectError.from(refused).rawMessage, /a worker answers only its manager/);
  }
  const transport = grpcTransport(worker.address, { token: secret });
  const tasks = createClient(TaskService, transport);
  const got = await tasks.getTask({ id: "seen" });
  t.is(got.task?.state, TaskState.RUNNING);
  t.is(got.task?.containerId, update.containerId);
  t.is(got.task?.workerId, worker.id);
  const listed = await tasks.listTasks({ labels: { tier: "front" } });
  t.deepEqual(
    listed.tasks.map((x) => x.id),
    ["seen"],
  );
  t.is((await tasks.listTasks({ name: "other" })).tasks.length, 0);
  const missing = await t.throwsAsync(tasks.getTask({ id: "nope" }));
  t.is(ConnectError.from(missing).code, Code.NotFound);
  const run = await t.throwsAsync(tasks.runTask({ spec: web }));
  t.is(ConnectError.from(run).code, Code.Unimplemented);
  const tooBig = await t.throwsAsync(tasks.listTasks({ pageSize: 5000 }));
  t.is(ConnectError.from(tooBig).code, Code.InvalidArgument);

  // httpd -v logs each request to stderr; Docker's log copier writes it a moment later.
  let logged = "";
  for (const until = Date.now() + 10_000; !/response:200/.test(logged) && Date.now() < until; ) {
    logged = "";
    for await (const chunk of tasks.taskLogs({ id: "seen", tail: 50 })) {
      logged += new TextDecoder().decode(chunk.data);
    }
    if (!/response:200/.test(logged)) await new Promise((r) => setTimeout(r, 200));
  }
  t.regex(logged, /response:200/);

  const metrics = createClient(MetricsService, transport);
  const node = await metrics.getNodeMetrics({});
  t.is(node.metrics?.workerId, worker.id);
  t.true((node.metrics?.memoryTotalBytes ?? 0n) > 0n);
  const other = await t.throwsAsync(metrics.getNodeMetrics({ workerId: "someone-else" }));
  t.is(ConnectError.from(other).code, Code.NotFound);

  const health = await createClient(Health, transport).check({});
  t.is(health.status, HealthCheckResponse_ServingStatus.SERVING);

  // Stats go up the stream every interval, with the task's container sample.
  const stats = await manager.waitFor(
    () => manager.messages("stats").find((s) => s.tasks.some((m) => m.taskId === "seen")),
    15_000,
    "a stats sample with the task",
  );
  t.is(stats.node?.workerId, worker.id);
  t.is(stats.tasks.find((m) => m.taskId === "seen")?.containerId, update.containerId);
});

/** Follows a push stream to its end; Docker reports failures inside it. */
function follow(stream: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve, reject) =>
    docker.modem.followProgress(stream, (error: Error | null, out: { error?: string }[]) => {
      const failed = out?.find((e) => e.error);
      if (error || failed) reject(error ?? new Error(failed?.error));
      else resolve();
    }),
  );
}

test("an image missing locally is pulled from the registry, with progress, then run", async (t) => {
  const ref = `127.0.0.1:5000/cube-worker-test/httpd:t${randomUUID().slice(0, 8)}`;
  t.teardown(() =>
    docker
      .getImage(ref)
      .remove({ force: true })
      .catch(() => undefined),
  );
  const [repo, tag] = [ref.slice(0, ref.lastIndexOf(":")), ref.slice(ref.lastIndexOf(":") + 1)];
  await docker.getImage(HTTP_IMAGE).tag({ repo, tag });
  await follow(await docker.getImage(ref).push({ authconfig: {} }));
  await docker.getImage(ref).remove();
  const { manager } = await setup(t);
  manager.run({ id: "pulled", spec: { ...web, image: ref } });
  await manager.waitForUpdate(stateOf("pulled", TaskState.RUNNING), 20_000, "RUNNING");
  const progress = manager.messages("progress").filter((p) => p.taskId === "pulled");
  t.true(progress.length >= 1);
  t.log(`${progress.length} progress message(s), first: ${progress[0]?.message}`);
});
