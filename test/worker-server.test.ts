/**
 * The worker's own services (read-only TaskService, MetricsService) through
 * createRouterTransport, over task records and the hollow driver: filters, pages,
 * error codes, and the metrics watch.
 */
import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import test from "ava";
import { createHollowDriver } from "../bench/hollow-driver.js";
import { MetricsService, NodeMetricsSchema } from "../gen/cube/v1/metrics_pb.js";
import { type Task, TaskSchema, TaskState } from "../gen/cube/v1/task_pb.js";
import { LogStream, TaskService } from "../gen/cube/v1/task_service_pb.js";
import { workerRoutes } from "../worker/api/server.js";
import { StatsFeed } from "../worker/stream/stats-feed.js";
import { type Driver, DriverError } from "../worker/tasks/driver.js";
import { eventually } from "./manager-harness.js";

const WORKER = "w-1";

function setup(tasks: Task[], logsError?: DriverError) {
  const hollow = createHollowDriver();
  // A driver whose log reads fail as told: the code mapping is the unit under test.
  const driver: Driver = logsError
    ? {
        ...hollow,
        logs: () => ({
          [Symbol.asyncIterator]: () => ({
            next: () => Promise.reject(logsError),
          }),
        }),
      }
    : hollow;
  const stats = new StatsFeed({
    workerId: WORKER,
    node: () => create(NodeMetricsSchema, { workerId: WORKER, cpuCount: 2 }),
    driver,
    tasks: () => tasks,
    intervalMs: 20,
  });
  const transport = createRouterTransport(
    workerRoutes({ workerId: WORKER, tasks: () => tasks, stats, driver }),
  );
  return {
    tasks: createClient(TaskService, transport),
    metrics: createClient(MetricsService, transport),
    stats,
  };
}

const task = (id: string, state: TaskState, at: number) =>
  create(TaskSchema, {
    id,
    state,
    workerId: WORKER,
    scheduledAt: timestampFromMs(at),
    spec: { name: id.startsWith("web") ? "web" : "job", image: "x", labels: { n: id } },
  });

const codeOf = (error: unknown) => ConnectError.from(error).code;

test("GetTask finds a held task; NOT_FOUND otherwise; INVALID_ARGUMENT without an id", async (t) => {
  const { tasks } = setup([task("web-1", TaskState.RUNNING, 1)]);
  t.is((await tasks.getTask({ id: "web-1" })).task?.state, TaskState.RUNNING);
  t.is(codeOf(await t.throwsAsync(tasks.getTask({ id: "nope" }))), Code.NotFound);
  const empty = await t.throwsAsync(tasks.getTask({ id: "" }));
  t.is(codeOf(empty), Code.InvalidArgument);
  t.regex(empty?.message ?? "", /id is required/);
});

test("ListTasks filters by state, name, labels and worker, oldest first, in pages", async (t) => {
  const held = [
    task("web-2", TaskState.RUNNING, 2),
    task("job-1", TaskState.FAILED, 3),
    task("web-1", TaskState.RUNNING, 1),
    task("web-3", TaskState.COMPLETED, 4),
  ];
  const { tasks } = setup(held);
  const ids = (r: { tasks: Task[] }) => r.tasks.map((x) => x.id);
  t.deepEqual(ids(await tasks.listTasks({})), ["web-1", "web-2", "job-1", "web-3"]);
  t.deepEqual(ids(await tasks.listTasks({ states: [TaskState.RUNNING] })), ["web-1", "web-2"]);
  t.deepEqual(ids(await tasks.listTasks({ name: "job" })), ["job-1"]);
  t.deepEqual(ids(await tasks.listTasks({ labels: { n: "web-3" } })), ["web-3"]);
  t.deepEqual(ids(await tasks.listTasks({ workerId: "other" })), []);
  const first = await tasks.listTasks({ pageSize: 3 });
  t.deepEqual(ids(first), ["web-1", "web-2", "job-1"]);
  const second = await tasks.listTasks({ pageSize: 3, pageToken: first.nextPageToken });
  t.deepEqual(ids(second), ["web-3"]);
  t.is(second.nextPageToken, "");
  t.is(codeOf(await t.throwsAsync(tasks.listTasks({ pageToken: "x" }))), Code.InvalidArgument);
  t.is(codeOf(await t.throwsAsync(tasks.listTasks({ pageSize: 1001 }))), Code.InvalidArgument);
  const manyLabels = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"]));
  const tooMany = await t.throwsAsync(tasks.listTasks({ labels: manyLabels }));
  t.is(codeOf(tooMany), Code.InvalidArgument);
  t.regex(tooMany?.message ?? "", /labels: at most 64 entries/);
});

test("the TaskService methods that change tasks are UNIMPLEMENTED on a worker", async (t) => {
  const { tasks } = setup([]);
  t.is(codeOf(await t.throwsAsync(tasks.runTask({}))), Code.Unimplemented);
  t.is(codeOf(await t.throwsAsync(tasks.runTasks({}))), Code.Unimplemented);
  t.is(codeOf(await t.throwsAsync(tasks.stopTask({ id: "a" }))), Code.Unimplemented);
  t.is(codeOf(await t.throwsAsync(tasks.listTaskEvents({ taskId: "a" }))), Code.Unimplemented);
});

test("TaskLogs of a task without a container is FAILED_PRECONDITION", async (t) => {
  const { tasks } = setup([task("web-1", TaskState.FAILED, 1)]);
  const error = await t.throwsAsync(async () => {
    for await (const _ of tasks.taskLogs({ id: "web-1" })) {
      // nothing expected
    }
  });
  t.is(codeOf(error), Code.FailedPrecondition);
});

for (const [kind, code] of [
  ["container-gone", Code.NotFound],
  ["engine-unavailable", Code.FailedPrecondition],
  ["runtime", Code.FailedPrecondition],
] as const) {
  test(`TaskLogs: a driver failure "${kind}" is ${Code[code]}`, async (t) => {
    const held = create(TaskSchema, { ...task("web-1", TaskState.RUNNING, 1), containerId: "c1" });
    const { tasks } = setup([held], new DriverError(`logs failed (${kind})`, kind));
    const error = await t.throwsAsync(async () => {
      for await (const _ of tasks.taskLogs({ id: "web-1" })) {
        // nothing expected
      }
    });
    t.is(codeOf(error), code);
    t.is(ConnectError.from(error).rawMessage, `logs failed (${kind})`);
  });
}

test("TaskLogs checks since against the worker's clock (INVALID_ARGUMENT), and hands it to the driver, whose stamps come back as the chunks' times", async (t) => {
  const held = create(TaskSchema, { ...task("web-1", TaskState.RUNNING, 1), containerId: "c1" });
  const stamp = timestampFromMs(Date.now() - 1000);
  const asked: unknown[] = [];
  const hollow = createHollowDriver();
  const driver: Driver = {
    ...hollow,
    async *logs(_id, options) {
      asked.push(options.since);
      yield { stream: LogStream.STDOUT, data: new TextEncoder().encode("hi\n"), time: stamp };
    },
  };
  const transport = createRouterTransport(
    workerRoutes({
      workerId: WORKER,
      tasks: () => [held],
      stats: new StatsFeed({
        workerId: WORKER,
        node: () => create(NodeMetricsSchema, { workerId: WORKER }),
        driver,
        tasks: () => [held],
        intervalMs: 1000,
      }),
      driver,
    }),
  );
  const tasks = createClient(TaskService, transport);
  const read = async (since?: Timestamp) => {
    const out = [];
    for await (const chunk of tasks.taskLogs({ id: "web-1", since })) out.push(chunk);
    return out;
  };
  const chunks = await read(stamp);
  t.deepEqual(asked, [stamp]);
  t.deepEqual(
    chunks.map((c) => c.time),
    [stamp],
  );
  const soon = timestampFromMs(Date.now() + 30_000);
  t.is((await read(soon)).length, 1, "within a minute of the worker's clock: fine");
  const later = await t.throwsAsync(read(timestampFromMs(Date.now() + 5 * 60_000)));
  t.is(codeOf(later), Code.InvalidArgument);
  t.regex(
    ConnectError.from(later).rawMessage,
    /^since: \S+ is in the future \(the worker's clock reads /,
  );
  const negative = await t.throwsAsync(
    read({ $typeName: "google.protobuf.Timestamp", seconds: -1n, nanos: 0 }),
  );
  t.is(codeOf(negative), Code.InvalidArgument);
  t.is(asked.length, 2, "a refused since never reaches the driver");
});

test("metrics: a watcher that stops reading gets the latest sample when it reads again, not a backlog", async (t) => {
  let taken = 0;
  const stats = new StatsFeed({
    workerId: WORKER,
    // cpu_count numbers the samples here.
    node: () => create(NodeMetricsSchema, { workerId: WORKER, cpuCount: ++taken }),
    driver: createHollowDriver(),
    tasks: () => [],
    intervalMs: 20,
  });
  t.teardown(() => stats.close());
  const transport = createRouterTransport(
    workerRoutes({ workerId: WORKER, tasks: () => [], stats, driver: createHollowDriver() }),
  );
  const metrics = createClient(MetricsService, transport);
  stats.start();
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const it = metrics.watchMetrics({}, { signal: abort.signal })[Symbol.asyncIterator]();
  const first = (await it.next()).value?.node?.cpuCount ?? 0;
  // Five samples or more taken while the watcher does not read (however slow the machine).
  await eventually(() => {
    if (taken - first < 5) throw new Error(`${taken - first} samples so far`);
  }, 10_000);
  const latest = taken;
  const next = (await it.next()).value?.node?.cpuCount ?? 0;
  t.true(next >= latest - 1, `got sample ${next} after ${first}, latest ${latest}`);
});

test("metrics: the worker's own node, NOT_FOUND for another, and a watch that streams", async (t) => {
  const { metrics, stats } = setup([]);
  t.teardown(() => stats.close());
  t.is((await metrics.getNodeMetrics({})).metrics?.workerId, WORKER);
  t.is((await metrics.getNodeMetrics({ workerId: WORKER })).metrics?.cpuCount, 2);
  t.is(codeOf(await t.throwsAsync(metrics.getNodeMetrics({ workerId: "x" }))), Code.NotFound);
  t.is((await metrics.listNodeMetrics({})).metrics.length, 1);
  t.deepEqual((await metrics.listTaskMetrics({ workerId: "x" })).metrics, []);
  stats.start();
  // The feed's timer does not hold the process up; with no socket open here, this does.
  const keepAlive = setInterval(() => undefined, 1000);
  t.teardown(() => clearInterval(keepAlive));
  let n = 0;
  const abort = new AbortController();
  for await (const sample of metrics.watchMetrics({}, { signal: abort.signal })) {
    t.is(sample.node?.workerId, WORKER);
    if (++n === 3) break;
  }
  t.is(n, 3);
});
