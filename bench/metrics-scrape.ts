/**
 * Metrics scrape: GET /metrics of a manager holding 100,000 tasks (bench/metrics-host.ts:
 * 80,000 SCHEDULED on a hundred workers, 20,000 PENDING), over HTTP/1.1 on a kept-alive
 * connection as Prometheus scrapes, one request after another → p50, p99 and max latency
 * from the request to the last byte. Baseline: the same host with no task, so the ratio is
 * what 100,000 tasks add to a scrape (nothing, when the counts are kept as tasks change).
 * Goal (issue 16): p99 ≤ 50 ms.
 */
import { Agent, request } from "node:http";
import { spawnChild } from "./children.js";
import type { BenchContext } from "./context.js";
import type { ScenarioOutcome } from "./result.js";
import { medianOfRuns, percentile, round } from "./stats.js";

const K = {
  p50: "scrape p50 (ms)",
  p99: "scrape p99 (ms)",
  max: "scrape max (ms)",
  size: "page (KiB)",
};

/** One GET /metrics on `agent`'s connection: its time to the last byte (ms) and its body. */
function scrapeOnce(address: string, agent: Agent): Promise<{ ms: number; body: string }> {
  const [host, port] = [address.slice(0, address.lastIndexOf(":")), address.split(":").at(-1)];
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request(
      {
        host,
        port: Number(port),
        path: "/metrics",
        agent,
        // What Prometheus 2.42 asks for.
        headers: {
          accept:
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          if (res.statusCode !== 200) reject(new Error(`GET /metrics: ${res.statusCode}`));
          else resolve({ ms: performance.now() - started, body: Buffer.concat(chunks).toString() });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** Fills a host with `tasks` tasks, then scrapes it `scrapes` times; figures of that run. */
async function oneRun(
  ctx: BenchContext,
  tasks: number,
  scrapes: number,
): Promise<Record<string, number>> {
  const host = await spawnChild({
    name: `manager host (${tasks} tasks)`,
    script: "bench/metrics-host.ts",
    env: { BENCH_TASKS: String(tasks), CUBE_LISTEN: "127.0.0.1:0", CUBE_LOG_LEVEL: "warn" },
    readyTimeoutMs: 180_000,
  });
  try {
    const address = host.hello.listening as string;
    ctx.progress(`${tasks} tasks filled in ${host.hello.fillMs} ms; scraping ${scrapes} times`);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      // The first scrape checks the page: every task counted, by state.
      const first = await scrapeOnce(address, agent);
      let counted = 0;
      for (const m of first.body.matchAll(/^cube_tasks\{state="\w+"\} (\d+)$/gm)) {
        counted += Number(m[1]);
      }
      if (counted !== tasks) throw new Error(`cube_tasks adds up to ${counted}, not ${tasks}`);
      // A few to warm up (JIT, the connection), not measured.
      for (let i = 0; i < 20; i++) await scrapeOnce(address, agent);
      const times: number[] = [];
      for (let i = 0; i < scrapes; i++) times.push((await scrapeOnce(address, agent)).ms);
      return {
        [K.p50]: round(percentile(times, 50)),
        [K.p99]: round(percentile(times, 99)),
        [K.max]: round(Math.max(...times)),
        [K.size]: round(Buffer.byteLength(first.body) / 1024),
      };
    } finally {
      agent.destroy();
    }
  } finally {
    await host.stop();
  }
}

/** Runs the metrics-scrape scenario. */
export async function metricsScrape(ctx: BenchContext): Promise<ScenarioOutcome> {
  const tasks = ctx.overrides["scrape-tasks"] ?? 100_000;
  const scrapes = ctx.overrides.scrapes ?? (ctx.quick ? 200 : 1000);
  const cubeRuns: Record<string, number>[] = [];
  const emptyRuns: Record<string, number>[] = [];
  for (let run = 1; run <= ctx.runs; run++) {
    cubeRuns.push(await oneRun(ctx, tasks, scrapes));
    emptyRuns.push(await oneRun(ctx, 0, scrapes));
    ctx.progress(
      `run ${run}/${ctx.runs}: p99 ${cubeRuns.at(-1)?.[K.p99]} ms with ${tasks} tasks, ${emptyRuns.at(-1)?.[K.p99]} ms empty`,
    );
  }
  const figures = medianOfRuns(cubeRuns);
  const baseline = medianOfRuns(emptyRuns);
  // Printed next to each figure: the page is served by the manager's own routes, but not by
  // the manager process as shipped.
  const unlike = [
    "the manager is bench/metrics-host.ts (a control plane over a MemoryStore, its 100 workers in its table with no stream open), not manager/main.ts over LevelDB",
    "manager log level warn (default info)",
  ];
  return {
    name: "metrics-scrape",
    title: `GET /metrics of a manager with ${tasks.toLocaleString("en-US")} tasks`,
    figures,
    baseline,
    differences: Object.fromEntries(
      [...Object.keys(figures), ...Object.keys(baseline)].map((k) => [k, unlike]),
    ),
    runs: ctx.runs,
    note:
      `${tasks} tasks placed by the manager's own RunTasks code on 100 READY workers of a control plane over a MemoryStore (bench/metrics-host.ts: 80 % SCHEDULED, the rest PENDING), served as startManager serves it; ` +
      `${scrapes} sequential GET /metrics over one kept-alive HTTP/1.1 connection with Prometheus's Accept header, after 20 unmeasured; time from the request to the last byte. ` +
      "Baseline: the same host with no task.",
    goals: [{ figure: K.p99, kind: "max", limit: 50, text: "≤ 50 ms" }],
    detail: { perRun: { cube: cubeRuns, empty: emptyRuns }, tasks, scrapes },
  };
}
