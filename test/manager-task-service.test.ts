import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import {
  DesiredState,
  Protocol,
  type RestartMode,
  TaskEventType,
  type TaskSpecSchema,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import { TaskService, TaskView } from "../gen/cube/v1/task_service_pb.js";
import { AssignmentAction } from "../gen/cube/v1/worker_service_pb.js";
import { managerRoutes } from "../manager/api/routes.js";
import { eventually, FakeWorker, type Harness, harness, spec } from "./manager-harness.js";

type SpecInit = MessageInitShape<typeof TaskSpecSchema>;

async function code(p: Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await p;
  } catch (error) {
    const e = ConnectError.from(error);
    return { code: e.code, message: e.rawMessage };
  }
  throw new Error("expected the call to fail");
}

const BAD_SPECS: [string, SpecInit | undefined, string][] = [
  ["no spec", undefined, "spec"],
  ["empty image", { image: "" }, "spec.image"],
  ["image with spaces", { image: "a b" }, "spec.image"],
  ["image too long", { image: "a".repeat(1025) }, "spec.image"],
  ["name too long", { image: "x", name: "n".repeat(254) }, "spec.name"],
  ["negative cpu", { image: "x", resources: { cpu: -1 } }, "spec.resources.cpu"],
  ["NaN cpu", { image: "x", resources: { cpu: Number.NaN } }, "spec.resources.cpu"],
  ["absurd cpu", { image: "x", resources: { cpu: 1025 } }, "spec.resources.cpu"],
  ["cpu finer than a millicore", { image: "x", resources: { cpu: 1e-7 } }, "spec.resources.cpu"],
  ["cpu between millicores", { image: "x", resources: { cpu: 0.0015 } }, "spec.resources.cpu"],
  ["cpu below Docker's 10m", { image: "x", resources: { cpu: 0.009 } }, "spec.resources.cpu"],
  ["image in capitals", { image: "UPPER/Case:tag" }, "spec.image"],
  ["image with a bad tag", { image: "cube/httpd:-x" }, "spec.image"],
  [
    "absurd memory",
    { image: "x", resources: { memoryBytes: 2n ** 50n + 1n } },
    "spec.resources.memory_bytes",
  ],
  ["tiny memory", { image: "x", resources: { memoryBytes: 1024n } }, "spec.resources.memory_bytes"],
  ["absurd disk", { image: "x", resources: { diskBytes: 2n ** 60n } }, "spec.resources.disk_bytes"],
  [
    "container port 0",
    { image: "x", ports: [{ containerPort: 0 }] },
    "spec.ports[0].container_port",
  ],
  [
    "container port 70000",
    { image: "x", ports: [{ containerPort: 70000 }] },
    "spec.ports[0].container_port",
  ],
  [
    "host port 70000",
    { image: "x", ports: [{ containerPort: 80, hostPort: 70000 }] },
    "spec.ports[0].host_port",
  ],
  [
    "duplicate host port",
    {
      image: "x",
      ports: [
        { containerPort: 80, hostPort: 8080 },
        { containerPort: 81, hostPort: 8080 },
      ],
    },
    "spec.ports[1].host_port",
  ],
  [
    "unknown protocol",
    { image: "x", ports: [{ containerPort: 80, protocol: 9 as Protocol }] },
    "spec.ports[0].protocol",
  ],
  [
    "bad host ip",
    { image: "x", ports: [{ containerPort: 80, hostIp: "localhost" }] },
    "spec.ports[0].host_ip",
  ],
  [
    "unknown restart mode",
    { image: "x", restartPolicy: { mode: 7 as RestartMode } },
    "spec.restart_policy.mode",
  ],
  [
    "absurd max restarts",
    { image: "x", restartPolicy: { maxRestarts: 5000 } },
    "spec.restart_policy.max_restarts",
  ],
  [
    "max backoff below backoff",
    {
      image: "x",
      restartPolicy: { backoff: durationFromMs(2000), maxBackoff: durationFromMs(1000) },
    },
    "spec.restart_policy.max_backoff",
  ],
  [
    "health path without /",
    { image: "x", ports: [{ containerPort: 80 }], healthCheck: { path: "health" } },
    "spec.health_check.path",
  ],
  [
    "health check without ports",
    { image: "x", healthCheck: { path: "/health" } },
    "spec.health_check.port",
  ],
  [
    "health interval of a millisecond (a busy loop)",
    {
      image: "x",
      ports: [{ containerPort: 80 }],
      healthCheck: { path: "/h", interval: durationFromMs(1) },
    },
    "spec.health_check.interval",
  ],
  [
    "negative health start period",
    {
      image: "x",
      ports: [{ containerPort: 80 }],
      healthCheck: { path: "/h", startPeriod: { seconds: -1n, nanos: 0 } },
    },
    "spec.health_check.start_period",
  ],
  [
    "negative stop timeout",
    { image: "x", stopTimeout: { seconds: -5n, nanos: 0 } },
    "spec.stop_timeout",
  ],
  [
    "a stop timeout over an hour",
    { image: "x", stopTimeout: durationFromMs(3600_001) },
    "spec.stop_timeout",
  ],
  [
    "health port not published",
    { image: "x", ports: [{ containerPort: 80 }], healthCheck: { path: "/h", port: 81 } },
    "spec.health_check.port",
  ],
  [
    "a health check on a UDP-only port",
    {
      image: "x",
      ports: [{ containerPort: 53, protocol: Protocol.UDP }],
      healthCheck: { path: "/h" },
    },
    "spec.health_check.port",
  ],
  [
    "a health check on the UDP one of its ports",
    {
      image: "x",
      ports: [{ containerPort: 80 }, { containerPort: 53, protocol: Protocol.UDP }],
      healthCheck: { path: "/h", port: 53 },
    },
    "spec.health_check.port",
  ],
  [
    "too many env",
    { image: "x", env: Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`K${i}`, "v"])) },
    "spec.env",
  ],
  ["env value too long", { image: "x", env: { K: "v".repeat(40000) } }, 'spec.env["K"]'],
  ["env name with =", { image: "x", env: { "A=B": "v" } }, "spec.env"],
  [
    "too many labels",
    {
      image: "x",
      labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"])),
    },
    "spec.labels",
  ],
  ["label value too long", { image: "x", labels: { k: "v".repeat(2000) } }, 'spec.labels["k"]'],
  ["too many args", { image: "x", args: Array.from({ length: 300 }, () => "a") }, "spec.args"],
];

for (const [name, bad, field] of BAD_SPECS) {
  test(`RunTask rejects ${name} naming ${field}`, async (t) => {
    const h = await harness(t);
    const e = await code(h.tasks.runTask({ spec: bad }));
    t.is(e.code, Code.InvalidArgument, e.message);
    t.true(e.message.startsWith(`${field}`), e.message);
    t.is(h.cp.tasks.size, 0);
  });
}

for (const [name, id] of [
  ["a slash", "a/b"],
  ["a space", "a b"],
  ["65 characters", "x".repeat(65)],
  ["unicode", "tâche"],
] as const) {
  test(`RunTask rejects an id with ${name}`, async (t) => {
    const h = await harness(t);
    const e = await code(h.tasks.runTask({ id, spec: spec() }));
    t.is(e.code, Code.InvalidArgument);
    t.true(e.message.startsWith("id:"), e.message);
  });
}

test("RunTask with no worker stores a PENDING task with a readable reason", async (t) => {
  const h = await harness(t);
  const { task } = await h.tasks.runTask({ spec: spec({ name: "web" }) });
  t.is(task?.state, TaskState.PENDING);
  t.is(task?.desiredState, DesiredState.RUNNING);
  t.is(task?.reason, "no workers registered");
  t.truthy(task?.id);
  t.truthy(task?.createdAt);
  const got = await h.tasks.getTask({ id: task?.id ?? "" });
  t.is(got.task?.spec?.name, "web");
});

test("a client-chosen id is an idempotency key", async (t) => {
  const h = await harness(t);
  const first = await h.tasks.runTask({ id: "job-1", spec: spec({ env: { A: "1" } }) });
  const again = await h.tasks.runTask({ id: "job-1", spec: spec({ env: { A: "1" } }) });
  t.is(again.task?.id, "job-1");
  t.is(again.task?.revision, first.task?.revision);
  t.is(h.cp.tasks.size, 1);
  const other = await code(h.tasks.runTask({ id: "job-1", spec: spec({ env: { A: "2" } }) }));
  t.is(other.code, Code.AlreadyExists);
  t.regex(other.message, /job-1/);
});

test("GetTask, StopTask and ListTaskEvents answer NOT_FOUND for an unknown id, INVALID_ARGUMENT for none", async (t) => {
  const h = await harness(t);
  for (const none of [h.tasks.getTask({ id: "" }), h.tasks.stopTask({ id: "" })]) {
    const error = await code(none);
    t.is(error.code, Code.InvalidArgument);
    t.is(error.message, "id: required");
  }
  t.is((await code(h.tasks.getTask({ id: "nope" }))).code, Code.NotFound);
  t.is((await code(h.tasks.stopTask({ id: "nope" }))).code, Code.NotFound);
  t.is((await code(h.tasks.listTaskEvents({ taskId: "nope" }))).code, Code.NotFound);
  const noTask = await code(h.tasks.listTaskEvents({ taskId: "" }));
  t.is(noTask.code, Code.InvalidArgument);
  t.is(noTask.message, "task_id: required", "named as the request's field");
  // The id comes back in the message, bounded and escaped: no 100 KB header, no terminal
  // escape sequence or bidirectional override reaching whoever reads it.
  const long = await code(h.tasks.getTask({ id: "x".repeat(100_000) }));
  t.is(long.code, Code.NotFound);
  t.regex(
    long.message,
    /^task "x{128}"… \(100000 characters\) not found \(ended tasks are removed 4h after they end\)$/,
  );
  const escaped = await code(h.tasks.getTask({ id: "\u001b[31mred\u202e" }));
  t.is(
    escaped.message,
    'task "\\u001b[31mred\\u202e" not found (ended tasks are removed 4h after they end)',
  );
});

test("stopping a PENDING task completes it at once; stopping it again is no error", async (t) => {
  const h = await harness(t);
  const { task } = await h.tasks.runTask({ spec: spec() });
  const stopped = await h.tasks.stopTask({ id: task?.id ?? "" });
  t.is(stopped.task?.state, TaskState.COMPLETED);
  t.is(stopped.task?.reason, "stopped");
  t.is(stopped.task?.desiredState, DesiredState.STOPPED);
  const again = await h.tasks.stopTask({ id: task?.id ?? "" });
  t.is(again.task?.state, TaskState.COMPLETED);
  t.is(again.task?.revision, stopped.task?.revision);
  t.is(h.cp.pending.size, 0);
});

test("stopping a RUNNING task sends STOP and completes when the worker reports it", async (t) => {
  const h = await harness(t);
  const w = new FakeWorker("w1");
  await w.connect(h.transport);
  const { task } = await h.tasks.runTask({ spec: spec() });
  const id = task?.id ?? "";
  t.is(task?.state, TaskState.SCHEDULED);
  await eventually(async () => {
    const { task } = await h.tasks.getTask({ id });
    if (task?.state !== TaskState.RUNNING) throw new Error("not running");
  });
  const stopping = await h.tasks.stopTask({ id });
  t.is(stopping.task?.desiredState, DesiredState.STOPPED);
  await w.waitFor((a) => a.action === AssignmentAction.STOP && a.task?.id === id);
  const done = await eventually(async () => {
    const { task } = await h.tasks.getTask({ id });
    if (task?.state !== TaskState.COMPLETED) throw new Error(`state ${task?.state}`);
    return task;
  });
  t.is(done.reason, "stopped");
  const { events } = await h.tasks.listTaskEvents({ taskId: id });
  t.deepEqual(
    events.map((e) => TaskEventType[e.type]),
    ["CREATED", "STATE_CHANGED", "STATE_CHANGED", "DESIRED_CHANGED", "STATE_CHANGED"],
  );
  t.is(events[0]?.task?.spec?.image, "cube/httpd:local", "events carry the spec");
  const worker = await h.workers.getWorker({ id: "w1" });
  t.is(worker.worker?.taskCount, 0);
  t.is(worker.worker?.allocated?.cpu, 0);
});

test("ListTasks filters by state, worker, name and labels, and pages in creation order", async (t) => {
  const h = await harness(t);
  const ids: string[] = [];
  for (let i = 0; i < 25; i++) {
    const { task } = await h.tasks.runTask({
      id: `t${String(i).padStart(2, "0")}`,
      spec: spec({ name: i % 2 ? "odd" : "even", labels: { tier: i < 5 ? "front" : "back" } }),
    });
    ids.push(task?.id ?? "");
  }
  await h.tasks.stopTask({ id: "t03" });
  const seen: string[] = [];
  let token = "";
  let pages = 0;
  do {
    const page = await h.tasks.listTasks({ pageSize: 10, pageToken: token });
    seen.push(...page.tasks.map((x) => x.id));
    token = page.nextPageToken;
    pages++;
    t.true(page.revision > 0n);
  } while (token);
  t.is(pages, 3);
  t.deepEqual(seen, ids);
  const odd = await h.tasks.listTasks({ name: "odd" });
  t.is(odd.tasks.length, 12);
  const front = await h.tasks.listTasks({ labels: { tier: "front" } });
  t.deepEqual(
    front.tasks.map((x) => x.id),
    ["t00", "t01", "t02", "t03", "t04"],
  );
  const frontOdd = await h.tasks.listTasks({ labels: { tier: "front" }, name: "odd" });
  t.deepEqual(
    frontOdd.tasks.map((x) => x.id),
    ["t01", "t03"],
  );
  const completed = await h.tasks.listTasks({ states: [TaskState.COMPLETED] });
  t.deepEqual(
    completed.tasks.map((x) => x.id),
    ["t03"],
  );
  const pendingOrDone = await h.tasks.listTasks({
    states: [TaskState.COMPLETED, TaskState.PENDING],
  });
  t.is(pendingOrDone.tasks.length, 25);
  const w = new FakeWorker("w1");
  await w.connect(h.transport);
  await eventually(async () => {
    const onW1 = await h.tasks.listTasks({ workerId: "w1" });
    if (onW1.tasks.length !== 24) throw new Error(`${onW1.tasks.length} on w1`);
  });
  const bad = await code(h.tasks.listTasks({ pageToken: "garbage" }));
  t.is(bad.code, Code.InvalidArgument);
  t.regex(bad.message, /^page_token/);
  // A filter is bounded like a spec: matching costs tasks × labels on the manager's thread.
  const manyLabels = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"]));
  const tooMany = await code(h.tasks.listTasks({ labels: manyLabels }));
  t.is(tooMany.code, Code.InvalidArgument);
  t.regex(tooMany.message, /^labels: at most 64 entries \(got 65\)/);
  const longName = await code(h.tasks.listTasks({ name: "n".repeat(254) }));
  t.is(longName.code, Code.InvalidArgument);
  t.regex(longName.message, /^name: at most 253/);
  const longValue = await code(h.tasks.listTasks({ labels: { tier: "v".repeat(1025) } }));
  t.regex(longValue.message, /^labels\["tier"\]: at most 1024/);
  const sixtyFour = Object.fromEntries(Object.entries(manyLabels).slice(0, 64));
  t.deepEqual((await h.tasks.listTasks({ labels: sixtyFour })).tasks, [], "64 labels are a filter");
});

test("ListTaskEvents pages a task's history", async (t) => {
  const h = await harness(t);
  const w = new FakeWorker("w1");
  await w.connect(h.transport);
  const { task } = await h.tasks.runTask({ spec: spec() });
  const id = task?.id ?? "";
  await eventually(async () => {
    if ((await h.tasks.getTask({ id })).task?.state !== TaskState.RUNNING) throw new Error("no");
  });
  await h.tasks.stopTask({ id });
  const first = await h.tasks.listTaskEvents({ taskId: id, pageSize: 2 });
  t.is(first.events.length, 2);
  t.truthy(first.nextPageToken);
  const rest = await h.tasks.listTaskEvents({ taskId: id, pageToken: first.nextPageToken });
  const revs = [...first.events, ...rest.events].map((e) => e.revision);
  t.deepEqual(
    revs,
    [...revs].sort((a, b) => (a < b ? -1 : 1)),
  );
  t.true(revs.length >= 4);
});

/** RunTasks requests `prefix-0`… (or without ids when `prefix` is empty), named by index. */
function batch(n: number, prefix: string, init: SpecInit = {}) {
  return Array.from({ length: n }, (_, i) => ({
    id: prefix ? `${prefix}-${i}` : "",
    spec: spec({ name: `n${i}`, ...init }),
  }));
}

test("RunTasks answers the full tasks by default, and without their specs in the BASIC view (binary and JSON)", async (t) => {
  const h = await harness(t);
  const w = new FakeWorker("w1", { capacity: { cpu: 64, memoryBytes: 64n << 30n } });
  await w.connect(h.transport);
  const json = createClient(
    TaskService,
    createRouterTransport(managerRoutes(h.cp), { transport: { useBinaryFormat: false } }),
  );
  for (const [format, client] of [
    ["binary", h.tasks],
    ["json", json],
  ] as const) {
    const full = await client.runTasks({ requests: batch(3, `full-${format}`) });
    t.deepEqual(
      full.tasks.map((x) => x.spec?.name),
      ["n0", "n1", "n2"],
      `${format}: specs by default`,
    );
    const basic = await client.runTasks({
      requests: batch(3, `basic-${format}`),
      view: TaskView.BASIC,
    });
    t.deepEqual(
      basic.tasks.map((x) => [x.id, x.spec, x.state, x.workerId, x.generation]),
      [0, 1, 2].map((i) => [`basic-${format}-${i}`, undefined, TaskState.SCHEDULED, "w1", 1n]),
      `${format}: ids, states and placements, no specs`,
    );
    const stored = await client.getTask({ id: `basic-${format}-0` });
    t.is(stored.task?.spec?.name, "n0", `${format}: the spec is stored all the same`);
  }
});

test("RunTasks accepts a batch in order and schedules it in order", async (t) => {
  const h = await harness(t);
  const w = new FakeWorker("w1", { capacity: { cpu: 64, memoryBytes: 64n << 30n } });
  await w.connect(h.transport);
  const requests = [...batch(30, "b"), ...batch(20, "")];
  const { tasks } = await h.tasks.runTasks({ requests });
  t.is(tasks.length, 50);
  t.deepEqual(
    tasks.slice(0, 30).map((x) => x.id),
    requests.slice(0, 30).map((r) => r.id),
  );
  t.deepEqual(
    tasks.map((x) => x.spec?.name),
    requests.map((r) => r.spec.name),
  );
  for (const task of tasks) t.is(task.state, TaskState.SCHEDULED, task.reason);
  t.true(
    tasks.slice(30).every((x) => x.id !== ""),
    "the manager chose the missing ids",
  );
  t.is(new Set(tasks.map((x) => x.id)).size, 50);
  const listed = await h.tasks.listTasks({});
  t.deepEqual(
    listed.tasks.map((x) => x.id),
    tasks.map((x) => x.id),
    "stored in request order",
  );
  await eventually(() => {
    if (w.assignments.length < 50) throw new Error(`${w.assignments.length} assignments`);
  });
  t.deepEqual(
    w.assignments.map((a) => a.task?.id),
    tasks.map((x) => x.id),
    "RUN sent in request order",
  );
});

test("RunTasks retried with the same batch returns the same tasks and records nothing", async (t) => {
  const h = await harness(t);
  const requests = batch(10, "r", { env: { A: "1" } });
  const first = await h.tasks.runTasks({ requests });
  const revision = h.cp.revision;
  const again = await h.tasks.runTasks({ requests });
  t.deepEqual(again.tasks, first.tasks);
  t.is(h.cp.revision, revision, "no new event");
  t.is(h.cp.tasks.size, 10);
});

test("RunTasks with a new task among retries creates only the new one", async (t) => {
  const h = await harness(t);
  const old = batch(3, "m");
  const first = await h.tasks.runTasks({ requests: old });
  const revision = h.cp.revision;
  const mixed = [old[0], { id: "m-new", spec: spec() }, old[2], { id: "", spec: spec() }];
  const { tasks } = await h.tasks.runTasks({ requests: mixed });
  t.deepEqual(tasks.map((x) => x.id).slice(0, 3), ["m-0", "m-new", "m-2"]);
  t.is(tasks[0]?.revision, first.tasks[0]?.revision);
  t.is(tasks[2]?.revision, first.tasks[2]?.revision);
  t.true((tasks[1]?.revision ?? 0n) > revision);
  t.true((tasks[3]?.revision ?? 0n) > (tasks[1]?.revision ?? 0n), "created in request order");
  t.is(h.cp.tasks.size, 5);
});

/** Runs a batch that must fail; checks that none of its tasks was stored. */
async function rejected(
  t: ExecutionContext,
  h: Harness,
  requests: { id?: string; spec?: ReturnType<typeof spec> }[],
): Promise<{ code: Code; message: string }> {
  const before = h.cp.tasks.size;
  const revision = h.cp.revision;
  const e = await code(h.tasks.runTasks({ requests }));
  t.is(h.cp.tasks.size, before, "nothing stored");
  t.is(h.cp.revision, revision, "no event");
  return e;
}

test("RunTasks with a bad request names it by index and stores none of the batch", async (t) => {
  const h = await harness(t);
  const requests = [
    ...batch(3, "bad"),
    { id: "bad-3", spec: spec({ image: "" }) },
    ...batch(2, "more"),
  ];
  const e = await rejected(t, h, requests);
  t.is(e.code, Code.InvalidArgument);
  t.is(e.message, "requests[3].spec.image: required");
  const noSpec = await rejected(t, h, [{ spec: spec() }, {}]);
  t.is(noSpec.message, "requests[1].spec: required");
  const badId = await rejected(t, h, [{ id: "a/b", spec: spec() }]);
  t.regex(badId.message, /^requests\[0\]\.id: /);
  t.is((await h.tasks.listTasks({})).tasks.length, 0);
});

test("RunTasks refuses 0 and 5001 requests", async (t) => {
  const h = await harness(t);
  const none = await rejected(t, h, []);
  t.is(none.code, Code.InvalidArgument);
  t.regex(none.message, /^requests: 1 to 5000 tasks/);
  const many = await rejected(t, h, batch(5001, ""));
  t.is(many.code, Code.InvalidArgument);
  t.regex(many.message, /^requests: 1 to 5000 tasks/);
  const { tasks } = await h.tasks.runTasks({ requests: batch(5000, "") });
  t.is(tasks.length, 5000, "5000 is allowed");
});

test("RunTasks refuses an id repeated within the batch", async (t) => {
  const h = await harness(t);
  const requests = batch(6, "d");
  requests[5] = { id: "d-2", spec: spec() };
  const e = await rejected(t, h, requests);
  t.is(e.code, Code.InvalidArgument);
  t.is(e.message, 'requests[5].id: "d-2" repeats requests[2].id');
});

test("RunTasks with a known id and another spec is ALREADY_EXISTS and stores nothing", async (t) => {
  const h = await harness(t);
  await h.tasks.runTask({ id: "k-1", spec: spec({ env: { A: "1" } }) });
  const requests = [
    { id: "k-0", spec: spec() },
    { id: "k-1", spec: spec({ env: { A: "2" } }) },
  ];
  const e = await rejected(t, h, requests);
  t.is(e.code, Code.AlreadyExists);
  t.is(e.message, 'requests[1]: task "k-1" already exists with another spec');
  t.deepEqual(
    (await h.tasks.listTasks({})).tasks.map((x) => x.id),
    ["k-1"],
  );
});
