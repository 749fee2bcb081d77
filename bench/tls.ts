/**
 * What TLS and tokens cost (issue 15, benchmarks): the same latency and throughput
 * measurements against three managers in the same run — plaintext without tokens (the
 * baseline, CUBE_AUTH=0), plaintext with tokens (the default on loopback), and TLS with
 * tokens (`--tls`: workers on mTLS with their own certificates) — interleaved round by
 * round, so all three see the same machine. Goal: TLS + tokens within 10 % of plaintext on
 * submit → RUNNING p50 and on placements/s.
 *
 *   latency     one real worker (Docker), N tasks of cube/httpd:local one at a time:
 *               RunTask → the RUNNING event on WatchTasks, on the same client connection
 *   throughput  W hollow workers (real worker code, no containers) in one child process,
 *               T tasks in RunTasks calls of B, C in flight: tasks placed in their answers
 *               ÷ (last answer − first submit)
 *
 * Run on its own: `node --import=tsx bench/tls.ts [--quick]` (writes bench/results/tls.json
 * and tls.md); `tlsOverhead` is also a scenario for bench/main.ts.
 */
import { readFile, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createClient } from "@connectrpc/connect";
import Docker from "dockerode";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { WorkerService } from "../gen/cube/v1/worker_service_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { type ClientTls, joinToken, MANAGER_URI } from "../lib/tls/identity.js";
import { fingerprint } from "../lib/tls/pki.js";
import { readToken } from "../manager/api/bootstrap-tokens.js";
import { removeLabelled } from "../worker/docker/remove-labelled.js";
import { type Child, spawnChild } from "./children.js";
import { cleanUp, tempDir } from "./cleanup.js";
import { BENCH_CONTAINER_LABEL, BENCH_LABEL, type BenchContext } from "./context.js";
import { procStats } from "./proc-stats.js";
import type { ScenarioOutcome } from "./result.js";
import { median, percentile } from "./stats.js";

/** The three ways a manager is run, in the order of the first round. */
const CONFIGS = [
  { name: "plaintext", env: { CUBE_AUTH: "0" } },
  { name: "plaintext + tokens", env: {} },
  { name: "TLS + tokens", env: { CUBE_TLS: "1" } },
] as const;
type ConfigName = (typeof CONFIGS)[number]["name"];

const K = {
  running50: "submit → RUNNING p50 (ms)",
  running95: "submit → RUNNING p95 (ms)",
  placements: "placements/s (answered)",
  call50: "RunTasks call p50 (ms)",
  managerCpu: "manager CPU per task (µs)",
  workersCpu: "hollow workers CPU per task (µs)",
};

/** Heartbeats as bench/throughput.ts runs hollow workers on a busy 2-core host. */
const TIMING = {
  CUBE_HEARTBEAT_INTERVAL: "2000",
  CUBE_HEARTBEAT_TIMEOUT: "10000",
  CUBE_DOWN_GRACE: "10000",
};

/** A manager of one configuration, with what its clients and workers need. */
interface Managed {
  readonly child: Child;
  readonly address: string;
  readonly token: string | undefined;
  /** The join token workers get (with the CA's digest over TLS). */
  readonly join: string | undefined;
  readonly tls: ClientTls | undefined;
}

async function startManager(
  config: (typeof CONFIGS)[number],
  dataDir: string,
  extra: Record<string, string> = {},
): Promise<Managed> {
  const child = await spawnChild({
    name: `manager (${config.name})`,
    script: "manager/main.ts",
    env: { CUBE_LISTEN: "127.0.0.1:0", CUBE_DATA_DIR: dataDir, ...config.env, ...extra },
  });
  const address = String(child.hello.listening);
  if (config.name === "plaintext") {
    return { child, address, token: undefined, join: undefined, tls: undefined };
  }
  const token = await readToken(dataDir, "admin");
  const secret = await readToken(dataDir, "worker");
  if (config.name === "plaintext + tokens") {
    return { child, address, token, join: secret, tls: undefined };
  }
  const ca = await readFile(join(dataDir, "tls", "ca.crt"), "utf8");
  return {
    child,
    address,
    token,
    join: joinToken(secret, fingerprint(ca)),
    tls: { ca, expect: MANAGER_URI },
  };
}

/** Waits until `count` workers are READY. */
async function waitForWorkers(m: Managed, count: number, timeoutMs: number): Promise<void> {
  const workers = createClient(
    WorkerService,
    grpcTransport(m.address, { token: m.token, tls: m.tls }),
  );
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { workers: all } = await workers.listWorkers({});
    if (all.filter((w) => w.status === WorkerStatus.READY).length >= count) return;
    if (Date.now() > deadline) throw new Error(`workers not READY within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Submit → RUNNING of `n` tasks, one at a time, after one unmeasured task. */
async function latencyRound(
  ctx: BenchContext,
  config: (typeof CONFIGS)[number],
  n: number,
): Promise<number[]> {
  const dir = await tempDir("tls-latency");
  const m = await startManager(config, join(dir.path, "manager"));
  const worker = await spawnChild({
    name: `worker (${config.name})`,
    script: "worker/main.ts",
    env: {
      CUBE_MANAGER: m.address,
      CUBE_LISTEN: "127.0.0.1:0",
      CUBE_DATA_DIR: join(dir.path, "worker"),
      CUBE_NAME: "tls-bench",
      ...(m.join ? { CUBE_TOKEN: m.join } : {}),
    },
  });
  try {
    await waitForWorkers(m, 1, 30_000);
    const tasks = createClient(
      TaskService,
      grpcTransport(m.address, { token: m.token, tls: m.tls }),
    );
    const abort = new AbortController();
    const waiting = new Map<string, (at: number) => void>();
    const { revision } = await tasks.listTasks({ pageSize: 1 });
    const watching = (async () => {
      try {
        for await (const { event } of tasks.watchTasks(
          { afterRevision: revision },
          { signal: abort.signal },
        )) {
          if (event?.task?.state === TaskState.RUNNING) waiting.get(event.task.id)?.(Date.now());
        }
      } catch {
        // ended by abort
      }
    })();
    const one = async (id: string) => {
      const running = new Promise<number>((resolve, reject) => {
        waiting.set(id, resolve);
        setTimeout(() => reject(new Error(`${id} not RUNNING in 30 s`)), 30_000).unref();
      });
      const t0 = Date.now();
      await tasks.runTask({
        id,
        spec: { name: id, image: "cube/httpd:local", labels: { [BENCH_LABEL]: ctx.runId } },
      });
      return (await running) - t0;
    };
    await one("warm");
    const samples: number[] = [];
    for (let i = 0; i < n; i++) samples.push(await one(`t${i}`));
    abort.abort();
    await watching;
    return samples;
  } finally {
    await worker.kill();
    await m.child.kill();
    await removeLabelled(ctx.docker, `${BENCH_CONTAINER_LABEL}=${ctx.runId}`);
    await dir.remove();
  }
}

/** Placements/s of `tasks` tasks over `workers` hollow workers. */
async function throughputRound(
  config: (typeof CONFIGS)[number],
  sizes: { workers: number; tasks: number; batch: number; inflight: number },
): Promise<{ placements: number; call50: number; managerCpu: number; workersCpu: number }> {
  const dir = await tempDir("tls-throughput");
  const shm = await tempDir("tls-hollow", "/dev/shm").catch(() => tempDir("tls-hollow"));
  const m = await startManager(config, join(dir.path, "manager"), TIMING);
  const hosts = await spawnChild({
    name: `hollow workers (${config.name})`,
    script: "bench/hollow-host.ts",
    nice: 10,
    readyTimeoutMs: 120_000,
    env: {
      BENCH_MANAGER: m.address,
      BENCH_COUNT: String(sizes.workers),
      BENCH_DIR: shm.path,
      BENCH_HOST: "0",
      BENCH_PING_TIMEOUT: TIMING.CUBE_HEARTBEAT_TIMEOUT,
      ...(m.join ? { BENCH_TOKEN: m.join } : {}),
    },
  });
  try {
    await waitForWorkers(m, sizes.workers, 60_000);
    const tasks = createClient(
      TaskService,
      grpcTransport(m.address, { token: m.token, tls: m.tls }),
    );
    const calls = Math.ceil(sizes.tasks / sizes.batch);
    const spec = {
      name: "hollow",
      image: "cube/httpd:local",
      resources: { cpu: 0.01, memoryBytes: 8n << 20n },
    };
    let next = 0;
    let placed = 0;
    let last = 0;
    const durations: number[] = [];
    // CPU time is what the encryption costs, and unlike wall time it barely moves when
    // other work shares the machine: each side's idle rate (heartbeats, stats) over 2 s
    // first, then the window from the first submit to 1 s after the last answer, idle taken out.
    const cpu = () => [procStats(m.child.pid).cpuSeconds, procStats(hosts.pid).cpuSeconds];
    const idleFrom = cpu();
    await new Promise((r) => setTimeout(r, 2000));
    const before = cpu();
    const idle = before.map((c, i) => (c - (idleFrom[i] ?? 0)) / 2);
    const first = Date.now();
    const lane = async () => {
      for (let c = next++; c < calls; c = next++) {
        const t0 = Date.now();
        const answer = await tasks.runTasks(
          {
            requests: Array.from({ length: sizes.batch }, (_, i) => ({
              id: `c${c}-${i}`,
              spec,
            })),
          },
          { timeoutMs: 120_000 },
        );
        last = Date.now();
        durations.push(last - t0);
        placed += answer.tasks.filter((t) => t.state === TaskState.SCHEDULED).length;
      }
    };
    await Promise.all(Array.from({ length: sizes.inflight }, lane));
    await new Promise((r) => setTimeout(r, 1000));
    const after = cpu();
    const window = (Date.now() - first) / 1000;
    const perTask = (i: number) =>
      Math.round(
        (((after[i] ?? 0) - (before[i] ?? 0) - (idle[i] ?? 0) * window) / sizes.tasks) * 1e6,
      );
    return {
      placements: (placed / (last - first)) * 1000,
      call50: percentile(durations, 50),
      managerCpu: perTask(0),
      workersCpu: perTask(1),
    };
  } finally {
    await hosts.kill();
    await m.child.kill();
    await shm.remove();
    await dir.remove();
  }
}

/** The scenario: every configuration, round after round, in a rotating order. */
export async function tlsOverhead(ctx: BenchContext): Promise<ScenarioOutcome> {
  const n = ctx.overrides["latency-tasks"] ?? (ctx.quick ? 5 : 20);
  const sizes = {
    workers: ctx.overrides.workers ?? (ctx.quick ? 20 : 100),
    tasks: ctx.overrides.tasks ?? (ctx.quick ? 2_000 : 20_000),
    batch: ctx.overrides.batch ?? 1_000,
    inflight: ctx.overrides.inflight ?? 4,
  };
  const perRound: Record<ConfigName, Record<string, number>[]> = {
    plaintext: [],
    "plaintext + tokens": [],
    "TLS + tokens": [],
  };
  for (let round = 0; round < ctx.runs; round++) {
    const order = CONFIGS.map((_, i) => CONFIGS[(i + round) % CONFIGS.length]);
    for (const config of order) {
      if (!config) continue;
      const latency = await latencyRound(ctx, config, n);
      const throughput = await throughputRound(config, sizes);
      const figures = {
        [K.running50]: percentile(latency, 50),
        [K.running95]: percentile(latency, 95),
        [K.placements]: Math.round(throughput.placements),
        [K.call50]: throughput.call50,
        [K.managerCpu]: throughput.managerCpu,
        [K.workersCpu]: throughput.workersCpu,
      };
      perRound[config.name].push(figures);
      ctx.progress(
        `round ${round + 1}/${ctx.runs}, ${config.name}: RUNNING p50 ${figures[K.running50]} ms, ${figures[K.placements]} placements/s`,
      );
    }
  }
  const med = (name: ConfigName) =>
    Object.fromEntries(
      Object.values(K).map((k) => [k, median(perRound[name].map((r) => r[k] ?? Number.NaN))]),
    );
  return {
    name: "tls",
    title: "TLS and tokens against plaintext: latency and throughput, in the same run",
    figures: med("TLS + tokens"),
    baseline: med("plaintext"),
    runs: ctx.runs,
    note:
      `Three managers per round, in rotating order: plaintext without tokens (the baseline, CUBE_AUTH=0), plaintext with tokens, TLS with tokens (CUBE_TLS=1; workers on mTLS with their own certificates, clients trusting the cluster CA). ` +
      `Latency: one real worker (Docker), ${n} tasks of cube/httpd:local one at a time, RunTask → RUNNING on WatchTasks, same client connection. ` +
      "CPU per task: user + system time of the process from the first submit to 1 s after the last answer, less its idle rate measured over the 2 s before, ÷ tasks. " +
      `Throughput: ${sizes.workers} hollow workers in one child process (nice 10), ${sizes.tasks} tasks in RunTasks calls of ${sizes.batch}, ${sizes.inflight} in flight, placements/s = tasks placed in their answers ÷ (last answer − first submit). ` +
      "Every figure is the median over rounds; the client is lib/rpc/client.ts grpcTransport (the CLI's).",
    differences: {
      [K.placements]: [
        "heartbeat interval 2 s, timeout 10 s, down grace 10 s (as bench/throughput.ts, for hollow workers sharing 2 cores)",
        "hollow workers (no containers) on the manager's machine",
      ],
      [K.call50]: ["as placements/s"],
      [K.managerCpu]: ["as placements/s"],
      [K.workersCpu]: ["as placements/s"],
    },
    goals: [
      { figure: K.running50, ofRatio: true, kind: "max", limit: 1.1, text: "≤ 1.10× plaintext" },
      { figure: K.placements, ofRatio: true, kind: "min", limit: 0.9, text: "≥ 0.90× plaintext" },
    ],
    detail: { perRound, tokensOnly: med("plaintext + tokens"), sizes, tasksPerRound: n },
  };
}

/** `node --import=tsx bench/tls.ts [--quick] [--runs=N]`: the scenario alone, with a report. */
async function main(): Promise<void> {
  const quick = process.argv.includes("--quick");
  const runsFlag = process.argv.find((a) => a.startsWith("--runs="));
  const runs = runsFlag ? Number(runsFlag.slice("--runs=".length)) : quick ? 1 : 3;
  const runId = `tls-${Date.now()}`;
  const ctx: BenchContext = {
    quick,
    runs,
    runId,
    docker: new Docker(),
    overrides: {},
    flags: {},
    progress: (message) => process.stderr.write(`tls: ${message}\n`),
  };
  const stop = () => void cleanUp().finally(() => process.exit(130));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const loadBefore = loadavg()[0] ?? 0;
  try {
    const outcome = await tlsOverhead(ctx);
    const loadAfter = loadavg()[0] ?? 0;
    const perRound = outcome.detail?.perRound as Record<string, Record<string, number>[]>;
    const roundRows = Object.entries(perRound).flatMap(([name, rounds]) =>
      rounds.map(
        (r, i) =>
          `| ${i + 1} | ${name} | ${Object.values(K)
            .map((k) => fmt(r[k] ?? Number.NaN))
            .join(" | ")} |`,
      ),
    );
    const tokensOnly = outcome.detail?.tokensOnly as Record<string, number>;
    const rows = Object.keys(outcome.figures).map((k) => {
      const base = outcome.baseline[k] ?? Number.NaN;
      const tls = outcome.figures[k] ?? Number.NaN;
      const tok = tokensOnly[k] ?? Number.NaN;
      return `| ${k} | ${fmt(base)} | ${fmt(tok)} (${ratio(tok, base)}) | ${fmt(tls)} (${ratio(tls, base)}) |`;
    });
    const verdicts = outcome.goals.map((g) => {
      const r =
        (outcome.figures[g.figure] ?? Number.NaN) / (outcome.baseline[g.figure] ?? Number.NaN);
      const ok = g.kind === "max" ? r <= g.limit : r >= g.limit;
      return `- ${g.figure}: ${r.toFixed(3)}× (${g.text}) ${quick ? "(quick: not judged)" : ok ? "✓" : "✗"}`;
    });
    const md = [
      `# ${outcome.title}`,
      "",
      `${quick ? "Quick run (small sizes, one round). " : ""}${outcome.runs} round(s), medians. ${outcome.note}`,
      "",
      "| figure | plaintext | plaintext + tokens | TLS + tokens |",
      "| --- | ---: | ---: | ---: |",
      ...rows,
      "",
      ...verdicts,
      "",
      `Machine load average (1 min): ${loadBefore.toFixed(1)} at the start, ${loadAfter.toFixed(1)} at the end, on ${availableCores()} cores. Every round:`,
      "",
      `| round | manager | ${Object.values(K).join(" | ")} |`,
      `| ---: | --- | ${Object.values(K)
        .map(() => "---:")
        .join(" | ")} |`,
      ...roundRows,
      "",
    ].join("\n");
    process.stdout.write(`${md}\n`);
    const base = new URL("./results/", import.meta.url);
    const suffix = quick ? "-quick" : "";
    await writeFile(new URL(`tls${suffix}.md`, base), md);
    await writeFile(
      new URL(`tls${suffix}.json`, base),
      `${JSON.stringify({ when: new Date().toISOString(), ...outcome }, (_, v) => (typeof v === "bigint" ? String(v) : v), 2)}\n`,
    );
  } finally {
    await cleanUp();
  }
}

function availableCores(): number {
  return navigator.hardwareConcurrency;
}

function fmt(v: number): string {
  return Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "—";
}

function ratio(v: number, base: number): string {
  return Number.isFinite(v / base) ? `${(v / base).toFixed(2)}×` : "—";
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
