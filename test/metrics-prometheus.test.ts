/**
 * Debian's Prometheus server scrapes a real `cube manager` and a real `cube worker` (separate
 * processes started through bin/cube.js, real containers), and what its HTTP API answers for
 * cube_tasks matches what `cube ps -o json` shows, state by state. The rest of both pages is
 * queried the same way: workers, placements, RPCs, the worker's stream, health checks and
 * Docker calls, process metrics. Prometheus runs on a free port of 127.0.0.1 with its own
 * config and storage in a temporary directory; a missing `prometheus` fails the test.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { cube, cubeEnv, freePort, type RunningCube, startCube } from "./cli-harness.js";
import { HTTP_IMAGE, removeContainers, requireDocker, tempDir } from "./fixtures.js";

/** One series of an instant query: its labels and value. */
interface Series {
  readonly metric: Record<string, string>;
  readonly value: number;
}

async function query(prometheus: string, promql: string): Promise<Series[]> {
  const res = await fetch(`http://${prometheus}/api/v1/query?query=${encodeURIComponent(promql)}`, {
    signal: AbortSignal.timeout(5000),
  });
  const body = (await res.json()) as {
    status: string;
    error?: string;
    data?: { result: { metric: Record<string, string>; value: [number, string] }[] };
  };
  if (body.status !== "success") throw new Error(`${promql}: ${body.error ?? res.status}`);
  return (body.data?.result ?? []).map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}

/** The single value of `promql` (an aggregation, or one series), or undefined when empty. */
async function scalar(prometheus: string, promql: string): Promise<number | undefined> {
  const result = await query(prometheus, promql);
  if (result.length > 1) throw new Error(`${promql}: ${result.length} series`);
  return result[0]?.value;
}

/** Retries `fn` until it returns something, for what the cluster does on its own time. */
async function eventually<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000) {
  const until = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > until) throw new Error(`${what}: not in time (${String(last ?? "")})`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** Starts Prometheus scraping `targets` (job name → host:port) every second; stopped at teardown. */
async function startPrometheus(
  t: { teardown(fn: () => unknown): void; log(...v: unknown[]): void },
  dir: string,
  targets: Record<string, string>,
): Promise<string> {
  const port = await freePort();
  await mkdir(dir, { recursive: true });
  const config = join(dir, "prometheus.yml");
  const jobs = Object.entries(targets)
    .map(
      ([job, target]) =>
        `  - job_name: ${job}\n    static_configs:\n      - targets: ["${target}"]\n`,
    )
    .join("");
  await writeFile(
    config,
    `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n${jobs}`,
  );
  await mkdir(join(dir, "tsdb"), { recursive: true });
  const child = spawn(
    "prometheus",
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, "tsdb")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  child.stderr?.setEncoding("utf8").on("data", (s: string) => {
    log += s;
  });
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const failed = new Promise<never>((_, reject) => {
    child.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        error.code === "ENOENT"
          ? new Error(
              "prometheus is missing: run `npm run setup` (it installs Debian's prometheus package)",
            )
          : error,
      ),
    );
    void exited.then(() => reject(new Error(`prometheus exited:\n${log}`)));
  });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
  });
  const address = `127.0.0.1:${port}`;
  await Promise.race([
    failed,
    eventually("prometheus ready", async () => {
      const res = await fetch(`http://${address}/-/ready`, { signal: AbortSignal.timeout(1000) });
      return res.ok ? true : undefined;
    }),
  ]);
  return address;
}

// biome-ignore lint/suspicious/noExplicitAny: JSON from the CLI, read field by field
type Json = any;

test("Prometheus scrapes a manager and a worker; cube_tasks by state matches cube ps", async (t) => {
  await requireDocker();
  const dir = await tempDir(t);
  const processes: RunningCube[] = [];
  let workerId = "";
  t.teardown(async () => {
    await Promise.all(processes.map((p) => p.kill()));
    if (workerId) await removeContainers(`cube.worker=${workerId}`);
  });
  // The manager writes its address and admin token to the config file: a temporary one.
  const env = cubeEnv({ CUBE_CONFIG: join(dir, "config.json") });
  const manager = startCube(
    ["manager", "--listen", "127.0.0.1:0", "--data-dir", join(dir, "m")],
    env,
  );
  processes.push(manager);
  const [, address] = await manager.waitFor(/manager listening on (\S+)/);
  const managerAddress = address as string;
  // With cube's tokens, the worker joins with the join token and clients use the admin one.
  const tokenOf = async (role: string) => {
    const file = join(dir, "m", `${role}.token`);
    return existsSync(file) ? (await readFile(file, "utf8")).trim() : undefined;
  };
  const joinToken = await tokenOf("worker");
  const adminToken = await tokenOf("admin");
  const clientEnv = cubeEnv({
    CUBE_CONFIG: join(dir, "config.json"),
    ...(adminToken ? { CUBE_TOKEN: adminToken } : {}),
  });
  const worker = startCube(
    [
      "worker",
      "--manager",
      managerAddress,
      "--listen",
      "127.0.0.1:0",
      "--name",
      "metrics-w1",
      "--data-dir",
      join(dir, "w1"),
      ...(joinToken ? ["--token", joinToken] : []),
    ],
    env,
  );
  processes.push(worker);
  const [, id, workerAddress] = await worker.waitFor(/worker (\S+) listening on (\S+),/);
  workerId = id as string;
  const c = async (...args: string[]) => {
    const [command, ...rest] = args;
    const r = await cube([command as string, "--manager", managerAddress, ...rest], {
      env: clientEnv,
    });
    if (r.code !== 0) throw new Error(`cube ${args.join(" ")}: ${r.code}\n${r.stderr}`);
    return r.stdout;
  };

  // Every state at once: two RUNNING (health-checked), one PENDING (fits nowhere), one
  // COMPLETED (stopped), one FAILED (exits 3, never restarted).
  for (const name of ["web1", "web2"]) {
    await c("run", HTTP_IMAGE, "--name", name, "-p", "80", "--health-path", "/health", "--wait");
  }
  await c("run", HTTP_IMAGE, "--name", "too-big", "--memory", "1000Ti");
  await c("run", HTTP_IMAGE, "--name", "stopped", "--wait");
  await c("stop", "stopped", "--wait");
  await c("run", HTTP_IMAGE, "--name", "fails", "--restart", "never", "--", "sh", "-c", "exit 3");

  const want: Record<string, string> = {
    web1: "RUNNING",
    web2: "RUNNING",
    "too-big": "PENDING",
    stopped: "COMPLETED",
    fails: "FAILED",
  };
  const shown = (task: Json) => String(task.state).replace(/^TASK_STATE_/, "");
  const tasks: Json[] = await eventually("the tasks in their states", async () => {
    const list: Json[] = JSON.parse(await c("ps", "-o", "json")).tasks ?? [];
    const ok = Object.entries(want).every(
      ([name, state]) =>
        list.find((x) => x.spec?.name === name && shown(x) === state) !== undefined,
    );
    return ok && list.length === 5 ? list : undefined;
  });
  const ps: Record<string, number> = {};
  for (const task of tasks) ps[shown(task)] = (ps[shown(task)] ?? 0) + 1;

  const prometheus = await startPrometheus(t, join(dir, "prometheus"), {
    "cube-manager": managerAddress,
    "cube-worker": workerAddress as string,
  });
  // What Prometheus holds for cube_tasks, once it has scraped the settled manager.
  const scraped = await eventually("cube_tasks in Prometheus", async () => {
    const byState: Record<string, number> = {};
    for (const s of await query(prometheus, 'cube_tasks{job="cube-manager"}')) {
      if (s.value > 0) byState[s.metric.state as string] = s.value;
    }
    return JSON.stringify(sorted(byState)) === JSON.stringify(sorted(ps))
      ? sorted(byState)
      : undefined;
  }).catch(async (error: Error) => {
    const series = await query(prometheus, "cube_tasks").catch(() => []);
    throw new Error(
      `${error.message}; cube ps: ${JSON.stringify(ps)}, Prometheus: ${JSON.stringify(series)}`,
    );
  });
  t.deepEqual(scraped, sorted(ps));
  t.deepEqual(sorted(ps), { COMPLETED: 1, FAILED: 1, PENDING: 1, RUNNING: 2 });
  // Every state has its series, zeros included (rate() and alerts need no absent()).
  const states = (await query(prometheus, 'cube_tasks{job="cube-manager"}')).map(
    (s) => s.metric.state,
  );
  for (const s of ["PENDING", "SCHEDULED", "RUNNING", "COMPLETED", "FAILED"]) {
    t.true(states.includes(s), `cube_tasks{state="${s}"} is there`);
  }

  const m = '{job="cube-manager"}';
  const w = '{job="cube-worker"}';
  // Both targets scraped (each on its own schedule within the second) and up.
  await eventually("both targets up", async () => {
    const up = await query(prometheus, 'up{job=~"cube-.*"}');
    return up.length === 2 && up.every((s) => s.value === 1) ? true : undefined;
  }).catch(async (error: Error) => {
    const targets = await fetch(`http://${prometheus}/api/v1/targets`).then((r) => r.text());
    throw new Error(`${error.message}; targets: ${targets}`);
  });
  t.is(await scalar(prometheus, `cube_workers{job="cube-manager",status="READY"}`), 1);
  const generations = tasks.reduce((n, task) => n + Number(task.generation ?? 0), 0);
  t.is(await scalar(prometheus, `cube_placements_total${m}`), generations);
  t.is(await scalar(prometheus, `cube_scheduling_latency_seconds_count${m}`), 4, "4 placed");
  t.true(((await scalar(prometheus, `cube_store_commit_duration_seconds_count${m}`)) ?? 0) > 0);
  t.is(
    await scalar(
      prometheus,
      'cube_rpc_in_flight{job="cube-manager",service="cube.v1.WorkerService",method="Connect"}',
    ),
    1,
    "the worker's stream is open",
  );
  t.true(
    ((await scalar(
      prometheus,
      'sum(cube_rpc_requests_total{job="cube-manager",service="cube.v1.TaskService",code="OK"})',
    )) ?? 0) >= 6,
  );
  t.is(await scalar(prometheus, `cube_worker_stream_connected${w}`), 1);
  t.is(await scalar(prometheus, `cube_worker_stream_reconnects_total${w}`), 0);
  // The two running, the one that failed (exited, kept); the stopped one's was removed.
  const containers: Record<string, number> = {};
  for (const s of await query(prometheus, `cube_worker_containers${w}`)) {
    if (s.value > 0) containers[s.metric.state as string] = s.value;
  }
  t.deepEqual(sorted(containers), { FAILED: 1, RUNNING: 2 });
  t.true(
    ((await scalar(
      prometheus,
      'cube_worker_health_checks_total{job="cube-worker",result="healthy"}',
    )) ?? 0) >= 2,
  );
  t.true(
    ((await scalar(
      prometheus,
      'sum(cube_worker_docker_request_duration_seconds_count{job="cube-worker",endpoint="/containers/{id}/start",result="ok"})',
    )) ?? 0) >= 4,
    "every start was timed",
  );
  for (const job of [m, w]) {
    t.true(((await scalar(prometheus, `process_resident_memory_bytes${job}`)) ?? 0) > 0);
    t.not(await scalar(prometheus, `nodejs_eventloop_lag_seconds${job}`), undefined);
  }
});

/** Keys in order, so two counts compare as JSON. */
function sorted(counts: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}
