/**
 * The metrics of the manager and the worker, served at GET /metrics by real servers: task
 * counts kept incrementally against a count of the task table through every kind of change
 * (and after a reload), placements and scheduling latency against the tasks' generations,
 * RPC counts by code, the worker's Docker timings against the real engine, names and types
 * checked by Prometheus's own promtool, and --no-metrics.
 */
import { execFile } from "node:child_process";
import * as http2 from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import { Registry } from "prom-client";
import type { CliError } from "../cli/cli-error.js";
import { ExitCode } from "../cli/exit-codes.js";
import { metricsWanted } from "../cli/metrics-flag.js";
import { RestartMode, type Task, TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { LightCounter, LightHistogram } from "../lib/metrics/light.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { startServer } from "../lib/rpc/server.js";
import { stateName } from "../lib/task-state.js";
import { managerMetrics } from "../manager/api/metrics-http.js";
import { MANAGER_FILES, managerRoutes } from "../manager/api/routes.js";
import type { ControlPlane } from "../manager/core/control-plane.js";
import { TASK_STATES } from "../manager/core/task-counts.js";
import { startManager } from "../manager/index.js";
import { dockerEndpoint, WorkerMetrics } from "../worker/api/metrics.js";
import { dockerClient } from "../worker/docker/driver.js";
import { requireDocker, tempDir } from "./fixtures.js";
import { eventually, FakeWorker, type Harness, harness, spec } from "./manager-harness.js";

/** One sample of a scrape: its labels and value. */
interface Sample {
  readonly labels: Record<string, string>;
  readonly value: number;
}

/** Prometheus text → samples by metric name (enough of the format for what cube writes). */
function parse(text: string): Map<string, Sample[]> {
  const out = new Map<string, Sample[]>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1] as string] = l[2] as string;
    }
    const list = out.get(m[1] as string) ?? [];
    list.push({ labels, value: Number(m[3]) });
    out.set(m[1] as string, list);
  }
  return out;
}

/** The value of the one sample of `name` whose labels include `labels` (0 when none). */
function value(samples: Map<string, Sample[]>, name: string, labels: Record<string, string> = {}) {
  const found = (samples.get(name) ?? []).filter((s) =>
    Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (found.length > 1)
    throw new Error(`${name} ${JSON.stringify(labels)}: ${found.length} samples`);
  return found[0]?.value ?? 0;
}

/** Serves the control plane's services and /metrics on a real port, as startManager does. */
async function serve(t: ExecutionContext, cp: ControlPlane): Promise<string> {
  const server = await startServer({
    listen: "127.0.0.1:0",
    routes: managerRoutes(cp),
    files: MANAGER_FILES,
    ...managerMetrics(cp),
  });
  t.teardown(() => server.close());
  return server.address;
}

async function scrape(address: string): Promise<{ text: string; samples: Map<string, Sample[]> }> {
  const res = await fetch(`http://${address}/metrics`);
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status}`);
  const text = await res.text();
  return { text, samples: parse(text) };
}

/** Tasks by state name, counted from the task table (what ListTasks pages through). */
function countByState(tasks: readonly Task[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const s of TASK_STATES) counts[stateName(s)] = 0;
  for (const task of tasks)
    counts[stateName(task.state)] = (counts[stateName(task.state)] ?? 0) + 1;
  return counts;
}

function scrapedByState(samples: Map<string, Sample[]>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const s of samples.get("cube_tasks") ?? []) counts[s.labels.state as string] = s.value;
  return counts;
}

/** Fails loudly when promtool (Debian's prometheus package) is missing. */
async function promtool(text: string): Promise<string> {
  const child = execFile("promtool", ["check", "metrics"]);
  const out: string[] = [];
  child.stdout?.on("data", (d) => out.push(String(d)));
  child.stderr?.on("data", (d) => out.push(String(d)));
  child.stdin?.end(text);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        error.code === "ENOENT"
          ? new Error("promtool is missing: run `npm run setup` (Debian's prometheus package)")
          : error,
      ),
    );
    child.once("close", resolve);
  });
  const said = out.join("").trim();
  if (code !== 0 || said) throw new Error(`promtool check metrics (exit ${code}):\n${said}`);
  return said;
}

async function state(h: Harness, id: string, want: TaskState): Promise<void> {
  await eventually(async () => {
    const { task } = await h.tasks.getTask({ id });
    if (task?.state !== want) throw new Error(`${id}: ${stateName(task?.state ?? 0)}`);
  });
}

test("cube_tasks follows every change without a scan, and after a reload; placements and latency follow generations", async (t) => {
  const h = await harness(t);
  const a = new FakeWorker("a", { capacity: { cpu: 2 } });
  const b = new FakeWorker("b", { capacity: { cpu: 1 } });
  await a.connect(h.transport);
  await b.connect(h.transport);
  const address = await serve(t, h.cp);

  // 3 cores for 7 tasks of 0.5: 6 placed (and RUNNING: the fake workers start them), 1 PENDING.
  const ids = Array.from({ length: 7 }, (_, i) => `t${i}`);
  await h.tasks.runTasks({
    requests: ids.map((id) => ({
      id,
      spec: spec({
        resources: { cpu: 0.5 },
        restartPolicy: { mode: id === "t0" ? RestartMode.ON_FAILURE : RestartMode.NEVER },
      }),
    })),
  });
  const placed = ids.filter((id) => h.cp.tasks.get(id)?.task.workerId);
  t.is(placed.length, 6);
  for (const id of placed) await state(h, id, TaskState.RUNNING);
  // Stops, a failure that is restarted (t0), one that is not, and a stop that frees room
  // for the pending one.
  await h.tasks.stopTask({ id: placed[1] as string });
  await state(h, placed[1] as string, TaskState.COMPLETED);
  const failing = placed.find((id) => id !== "t0" && id !== placed[1]) as string;
  const onA = (id: string) => h.cp.tasks.get(id)?.task.workerId === "a";
  for (const id of ["t0", failing]) {
    const w = onA(id) ? a : b;
    const task = h.cp.tasks.get(id)?.task as Task;
    w.running.delete(id);
    w.update(id, task.generation, TaskState.FAILED, { exitCode: 1 });
  }
  await state(h, failing, TaskState.FAILED);
  await eventually(() => {
    if ((h.cp.tasks.get("t0")?.task.generation ?? 0n) < 2n) throw new Error("t0 not restarted");
  }, 5000);
  await eventually(async () => {
    const all = (await h.tasks.listTasks({ pageSize: 1000 })).tasks;
    const pending = all.filter((x) => x.state === TaskState.PENDING);
    if (pending.length > 0) throw new Error(`${pending.length} still PENDING`);
  }, 5000);

  const tasks = (await h.tasks.listTasks({ pageSize: 1000 })).tasks;
  const { samples } = await scrape(address);
  t.deepEqual(scrapedByState(samples), countByState(tasks));
  // Each placement is a new generation: their sum is every placement this manager made.
  const generations = tasks.reduce((n, x) => n + Number(x.generation), 0);
  t.is(value(samples, "cube_placements_total"), generations);
  t.true(generations >= 8, `${generations} placements: 7 tasks, a restart, the pending one`);
  // Latency: once per task, at its first placement only (restarts are not new tasks).
  t.is(value(samples, "cube_scheduling_latency_seconds_count"), tasks.length);
  // A scheduler run for each first placement; a restart on the same worker (t0) needs none.
  const decided = value(samples, "cube_scheduler_decision_duration_seconds_count", {
    result: "placed",
  });
  t.true(decided >= tasks.length && decided <= generations, `${decided} placed decisions`);
  t.true(
    value(samples, "cube_scheduler_decision_duration_seconds_count", { result: "unplaced" }) >= 1,
  );
  t.is(value(samples, "cube_workers", { status: "READY" }), 2);
  t.is(value(samples, "cube_workers", { status: "DOWN" }), 0);

  // Contact lost with b: its tasks are UNKNOWN (disconnection is not death).
  const onB = tasks.filter((x) => x.workerId === "b" && x.state === TaskState.RUNNING).length;
  t.true(onB > 0);
  b.disconnect();
  const lost = await eventually(async () => {
    const all = (await h.tasks.listTasks({ pageSize: 1000 })).tasks;
    if (all.filter((x) => x.state === TaskState.UNKNOWN).length !== onB) {
      throw new Error("b's tasks are not UNKNOWN yet");
    }
    return all;
  });
  const during = await scrape(address);
  t.deepEqual(scrapedByState(during.samples), countByState(lost));
  t.is(value(during.samples, "cube_tasks", { state: "UNKNOWN" }), onB);
  t.is(value(during.samples, "cube_workers", { status: "DISCONNECTED" }), 1);

  // A reload (the state read back from the store) counts every task as loaded.
  const again = await h.restart();
  const address2 = await serve(t, again.cp);
  const reloaded = await scrape(address2);
  const now = (await again.tasks.listTasks({ pageSize: 1000 })).tasks;
  t.deepEqual(scrapedByState(reloaded.samples), countByState(now));
  t.is(value(reloaded.samples, "cube_placements_total"), 0, "a load is no placement");
  t.is(value(reloaded.samples, "cube_workers", { status: "DISCONNECTED" }), 2);
});

test("RPCs are counted and timed by service, method and code; open streams are in flight", async (t) => {
  const h = await harness(t);
  const address = await serve(t, h.cp);
  const client = createClient(TaskService, grpcTransport(address));
  await client.listTasks({});
  await client.listTasks({});
  const missing = await client.getTask({ id: "nope" }).catch((e: unknown) => e);
  t.is(ConnectError.from(missing).code, Code.NotFound);
  const abort = new AbortController();
  const watch = client.watchTasks({}, { signal: abort.signal });
  const reading = (async () => {
    for await (const _ of watch);
  })().catch(() => undefined);
  const task = { service: "cube.v1.TaskService" };
  await eventually(async () => {
    const { samples } = await scrape(address);
    if (value(samples, "cube_rpc_in_flight", { ...task, method: "WatchTasks" }) !== 1) {
      throw new Error("the watch is not in flight");
    }
  });
  abort.abort();
  await reading;
  const { samples } = await eventually(async () => {
    const s = await scrape(address);
    if (value(s.samples, "cube_rpc_in_flight", { ...task, method: "WatchTasks" }) !== 0) {
      throw new Error("the watch is still in flight");
    }
    return s;
  });
  t.is(value(samples, "cube_rpc_requests_total", { ...task, method: "ListTasks", code: "OK" }), 2);
  t.is(
    value(samples, "cube_rpc_requests_total", { ...task, method: "GetTask", code: "NotFound" }),
    1,
  );
  t.is(
    value(samples, "cube_rpc_requests_total", { ...task, method: "WatchTasks", code: "Canceled" }),
    1,
  );
  t.is(
    value(samples, "cube_rpc_duration_seconds_count", { ...task, method: "ListTasks", code: "OK" }),
    2,
  );
});

test("a manager serves /metrics over HTTP/1.1 and h2c without a token; --no-metrics turns it off", async (t) => {
  const logger = createLogger("manager", "silent");
  const on = await startManager({ dataDir: await tempDir(t), listen: "127.0.0.1:0", logger });
  t.teardown(() => on.close());
  const h1 = await fetch(`http://${on.address}/metrics?x=1`);
  t.is(h1.status, 200);
  t.regex(h1.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const text = await h1.text();
  for (const name of [
    "cube_tasks",
    "cube_workers",
    "cube_placements_total",
    "cube_store_commit_duration_seconds",
    "process_cpu_seconds_total",
    "nodejs_eventloop_lag_seconds",
  ]) {
    t.regex(text, new RegExp(`^# TYPE ${name} `, "m"));
  }
  const session = http2.connect(`http://${on.address}`);
  t.teardown(() => session.close());
  const h2 = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = session.request({ ":path": "/metrics" });
    let body = "";
    let status = 0;
    req.on("response", (headers) => {
      status = Number(headers[":status"]);
    });
    req.setEncoding("utf8");
    req.on("data", (d: string) => {
      body += d;
    });
    req.on("end", () => resolve({ status, body }));
    req.on("error", reject);
  });
  t.is(h2.status, 200);
  t.regex(h2.body, /^cube_tasks\{state="PENDING"\} 0$/m);
  t.is((await fetch(`http://${on.address}/metrics`, { method: "POST" })).status, 405);
  t.is((await fetch(`http://${on.address}/other`)).status, 404);

  const off = await startManager({
    dataDir: await tempDir(t),
    listen: "127.0.0.1:0",
    logger,
    metrics: false,
  });
  t.teardown(() => off.close());
  t.is((await fetch(`http://${off.address}/metrics`)).status, 404);
});

test("the manager's and a worker's metrics pass promtool check metrics", async (t) => {
  await requireDocker();
  const h = await harness(t);
  const w = new FakeWorker("a");
  await w.connect(h.transport);
  await h.tasks.runTask({ id: "x", spec: spec() });
  await state(h, "x", TaskState.RUNNING);
  const address = await serve(t, h.cp);
  await promtool((await scrape(address)).text);

  const metrics = new WorkerMetrics();
  const docker = dockerClient();
  metrics.instrumentDocker(docker);
  await docker.ping();
  metrics.healthCheck(true);
  metrics.readTasksFrom({ tasks: () => [] });
  const worker = await startServer({
    listen: "127.0.0.1:0",
    routes: () => undefined,
    files: [],
    ...metrics.serving(),
  });
  t.teardown(() => worker.close());
  await promtool((await scrape(worker.address)).text);
  t.pass();
});

test("Docker API calls are timed by method, endpoint (ids taken out) and result, on the real engine", async (t) => {
  await requireDocker();
  const metrics = new WorkerMetrics();
  const docker = dockerClient();
  metrics.instrumentDocker(docker);
  await docker.ping();
  const gone = await docker
    .getContainer("cube-metrics-test-no-such-container")
    .inspect()
    .catch((e: unknown) => e);
  t.is((gone as { statusCode?: number }).statusCode, 404);
  const samples = parse(await metrics.registry.metrics());
  const name = "cube_worker_docker_request_duration_seconds_count";
  t.is(value(samples, name, { method: "GET", endpoint: "/_ping", result: "ok" }), 1);
  t.is(
    value(samples, name, { method: "GET", endpoint: "/containers/{id}/json", result: "404" }),
    1,
  );
});

test("Docker endpoints keep a few label values: ids and image names are taken out", (t) => {
  const cases: [string, string][] = [
    ["/containers/3f2a9c/start?", "/containers/{id}/start"],
    ["/v1.41/containers/3f2a9c/json", "/containers/{id}/json"],
    ["/containers/create?name=cube-x", "/containers/create"],
    ["/containers/json?all=1", "/containers/json"],
    ["/containers/3f2a9c?force=true", "/containers/{id}"],
    ["/images/cube/httpd:local/json", "/images/{id}/json"],
    ["/images/127.0.0.1:5000/app:1/json", "/images/{id}/json"],
    ["/images/create?fromImage=cube", "/images/create"],
    ["/images/cube/httpd:local?force=true", "/images/{id}"],
    ["/images/cube/httpd", "/images/{id}"],
    ["/containers/cube-web-1-3/logs?follow=1", "/containers/{id}/logs"],
    ["/events?filters=x", "/events"],
    ["/_ping", "/_ping"],
  ];
  for (const [path, want] of cases) t.is(dockerEndpoint(path), want, path);
});

test("light metrics write Prometheus's histogram and counter lines", async (t) => {
  const registry = new Registry();
  const h = new LightHistogram(registry, {
    name: "x_duration_seconds",
    help: "x",
    buckets: [0.1, 1],
    label: { name: "result", values: ["a", "b"] },
  });
  const a = h.series("a");
  a.observe(0.05);
  a.observe(0.1);
  a.observe(0.5);
  a.observe(7);
  const c = new LightCounter(registry, "x_total", "y");
  c.inc();
  c.inc(2);
  t.throws(() => h.series("c" as "a"), { message: /"c" was not declared/ });
  const text = await registry.metrics();
  t.true(text.includes('x_duration_seconds_bucket{result="a",le="0.1"} 2'));
  t.true(text.includes('x_duration_seconds_bucket{result="a",le="1"} 3'));
  t.true(text.includes('x_duration_seconds_bucket{result="a",le="+Inf"} 4'));
  t.true(text.includes('x_duration_seconds_sum{result="a"} 7.65'));
  t.true(text.includes('x_duration_seconds_count{result="a"} 4'));
  t.true(text.includes('x_duration_seconds_count{result="b"} 0'));
  t.true(text.includes("# TYPE x_total counter\nx_total 3"));
  await promtool(text);
});

test("--no-metrics and CUBE_METRICS=off turn the page off; on or unset leave it on; anything else is a usage error", (t) => {
  t.true(metricsWanted(undefined, {}));
  t.true(metricsWanted(undefined, { CUBE_METRICS: "" }));
  t.true(metricsWanted(true, { CUBE_METRICS: "on" }));
  t.true(metricsWanted(undefined, { CUBE_METRICS: "Yes" }));
  t.false(metricsWanted(false, {}));
  for (const off of ["off", "false", "0", "no", " OFF "]) {
    t.false(metricsWanted(undefined, { CUBE_METRICS: off }), off);
  }
  // A typo used to leave the page on in silence.
  const typo = t.throws(() => metricsWanted(undefined, { CUBE_METRICS: "of" }));
  t.is((typo as CliError).exitCode, ExitCode.Usage);
  t.regex(typo?.message ?? "", /^CUBE_METRICS: "of" is neither on \(1, true, yes, on\) nor off/);
});
