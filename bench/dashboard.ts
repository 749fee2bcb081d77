/**
 * Dashboard: the manager's CPU with the web dashboard open on 10,000 tasks while they change
 * ~100 times a second, against the same without the page. A real manager process (the
 * product's defaults: tokens, metrics) with 10 hollow workers (bench/hollow-host.ts, niced:
 * they stand for other machines); 10,000 tasks RUNNING; then a paced churn — every 100 ms,
 * the oldest tasks stopped and as many new ones run, about 100 task events a second, which
 * is what the page's WatchTasks stream carries. Each run measures both phases over the same
 * window, in alternating order: without any page, and with the dashboard open in Debian's
 * headless Chromium on its live tasks table. Also: how long the page takes to show every
 * task, what that load costs the manager, the browser's own CPU, and the page's longest task
 * (a frozen page would show here). `--dashboard-tasks=N --dashboard-seconds=S
 * --dashboard-rate=R` change the sizes.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Client } from "@connectrpc/connect";
import type { Browser, Page } from "playwright-core";
import { dashboardUrl } from "../cli/commands/dev.js";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { type TaskService, TaskView } from "../gen/cube/v1/task_service_pb.js";
import { buildWeb } from "../scripts/build-web.js";
import { launchChromium } from "../test/chromium.js";
import { type Child, spawnChild } from "./children.js";
import { tempDir } from "./cleanup.js";
import {
  adminTokenOf,
  currentRevision,
  joinTokenOf,
  spawnManager,
  taskClient,
  waitForWorkers,
} from "./cluster.js";
import { BENCH_LABEL, type BenchContext } from "./context.js";
import { procStats } from "./proc-stats.js";
import type { ScenarioOutcome } from "./result.js";
import { medianOfRuns, round } from "./stats.js";

const K = {
  cpu: "manager CPU (% of a core)",
  events: "task events/s",
  load: "page shows all tasks (ms)",
  loadCpu: "manager CPU of the page's load (core-ms)",
  browser: "browser CPU (% of a core)",
  longest: "page's longest task (ms)",
};

interface Sizes {
  readonly tasks: number;
  readonly seconds: number;
  /** Task events a second the churn aims at. */
  readonly rate: number;
  readonly workers: number;
}

function sizes(ctx: BenchContext): Sizes {
  const o = ctx.overrides;
  return {
    tasks: o["dashboard-tasks"] ?? (ctx.quick ? 1000 : 10_000),
    seconds: o["dashboard-seconds"] ?? (ctx.quick ? 4 : 20),
    rate: o["dashboard-rate"] ?? 100,
    workers: o["dashboard-workers"] ?? (ctx.quick ? 4 : 10),
  };
}

/** Failure detection as the README advises for overloaded hosts (see spawnManager below). */
const SLOW_HOST = { heartbeatTimeoutMs: 10_000, downGraceMs: 30_000 };

/** Events one churn step makes: a stop (DESIRED_CHANGED, COMPLETED) and a run (CREATED, SCHEDULED, RUNNING). */
const EVENTS_PER_PAIR = 5;
const TICK_MS = 100;

/**
 * Every TICK_MS, stops the `pairs` oldest tasks and runs as many new ones: the task count
 * stays put, and the events flow at about pairs × 5 / tick.
 */
function churn(client: Client<typeof TaskService>, live: string[], pairs: number, spec: object) {
  let next = 0;
  let stopped = false;
  let runs = 0;
  let failures = 0;
  let lastError = "";
  const timer = setInterval(() => {
    if (stopped) return;
    for (let i = 0; i < pairs; i++) {
      const old = live.shift();
      if (old) {
        client.stopTask({ id: old }).catch((e: Error) => {
          failures++;
          lastError = e.message;
        });
      }
      const id = `dash-churn-${process.pid}-${next++}`;
      live.push(id);
      client.runTask({ id, spec }).then(
        () => {
          runs++;
        },
        (e: Error) => {
          failures++;
          lastError = e.message;
        },
      );
    }
  }, TICK_MS);
  return {
    runs: () => runs,
    stop() {
      stopped = true;
      clearInterval(timer);
      if (failures > 0) throw new Error(`${failures} churn calls failed, e.g. ${lastError}`);
    },
  };
}

/** CPU seconds so far of each Chromium process under this one (the browser, renderers, GPU, utility). */
function browserCpu(): Map<number, number> {
  const parent = new Map<number, number>();
  const comm = new Map<number, string>();
  const cpu = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const fields = stat.slice(close + 2).split(" ");
      const pid = Number(name);
      comm.set(pid, stat.slice(stat.indexOf("(") + 1, close));
      parent.set(pid, Number(fields[1]));
      cpu.set(pid, (Number(fields[11]) + Number(fields[12])) / 100);
    } catch {
      // gone meanwhile
    }
  }
  const out = new Map<number, number>();
  for (const [pid, seconds] of cpu) {
    if (!/chrom/i.test(comm.get(pid) ?? "")) continue;
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p)) {
      if (p === process.pid) {
        out.set(pid, seconds);
        break;
      }
    }
  }
  return out;
}

/**
 * Browser CPU seconds between two readings: what each process alive at the end used since
 * the first (all of it for one started since). A renderer that exited meanwhile (the page
 * closed) is left out rather than counted negative.
 */
function browserCpuBetween(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, seconds] of after) total += seconds - (before.get(pid) ?? 0);
  return total;
}

/** The page's total task count, as it shows it. */
async function shownTotal(page: Page): Promise<number> {
  const text = await page.textContent('[data-testid="count-total"]').catch(() => null);
  return Number(text ?? Number.NaN);
}

/** Opens the dashboard and waits until it shows `count` tasks or more; resolves with the time. */
async function openPage(browser: Browser, address: string, count: number): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(dashboardUrl(address, adminTokenOf(address) as string, false));
  await page.waitForFunction(
    (n) => {
      const el = (
        globalThis as unknown as {
          document: { querySelector(s: string): { textContent: string | null } | null };
        }
      ).document.querySelector('[data-testid="count-total"]');
      return Number(el?.textContent) >= n;
    },
    count,
    { timeout: 120_000, polling: 100 },
  );
  // The live table, the heaviest view: rows re-rendered as their tasks change.
  await page.evaluate(() => {
    const g = globalThis as unknown as {
      location: { hash: string };
      longTasks: number[];
      PerformanceObserver: new (
        cb: (list: { getEntries(): { duration: number }[] }) => void,
      ) => { observe(o: { type: string; buffered: boolean }): void };
    };
    g.location.hash = "#/tasks";
    g.longTasks = [];
    new g.PerformanceObserver((list) => {
      for (const e of list.getEntries()) g.longTasks.push(e.duration);
    }).observe({ type: "longtask", buffered: false });
  });
  await page.waitForSelector("tr[data-task]", { timeout: 30_000 });
  return page;
}

async function oneRun(
  ctx: BenchContext,
  run: number,
  s: Sizes,
  browser: Browser,
): Promise<{ figures: Record<string, number>; baseline: Record<string, number> }> {
  const dir = await tempDir("dashboard");
  const shm = await tempDir("dashboard-hollow", "/dev/shm").catch(() =>
    tempDir("dashboard-hollow"),
  );
  let manager: (Child & { address: string }) | undefined;
  let host: Child | undefined;
  try {
    manager = await spawnManager({
      dataDir: join(dir.path, "manager"),
      // Chromium, the hollow workers and the manager share two cores: with the default 2 s a
      // starved hollow worker is taken for dead and its thousand tasks move, which is an
      // event storm, not the dashboard's cost. The README's advice for overloaded hosts.
      heartbeatTimeoutMs: SLOW_HOST.heartbeatTimeoutMs,
      downGraceMs: SLOW_HOST.downGraceMs,
    });
    const m = manager;
    host = await spawnChild({
      name: "hollow host",
      script: "bench/hollow-host.ts",
      nice: 10,
      env: {
        BENCH_MANAGER: m.address,
        BENCH_COUNT: String(s.workers),
        BENCH_DIR: join(shm.path, "h0"),
        BENCH_HOST: "0",
        BENCH_PING_TIMEOUT: String(SLOW_HOST.heartbeatTimeoutMs),
        ...(joinTokenOf(m.address) ? { BENCH_TOKEN: joinTokenOf(m.address) as string } : {}),
      },
      readyTimeoutMs: 120_000,
    });
    await waitForWorkers(m.address, s.workers, 60_000);
    const client = taskClient(m.address);
    const spec = {
      name: "dash",
      image: "cube/httpd:local",
      labels: { [BENCH_LABEL]: ctx.runId },
    };

    // s.tasks tasks, all RUNNING, before anything is measured.
    const t0 = Date.now();
    const live: string[] = [];
    for (let first = 0; first < s.tasks; first += 5000) {
      const n = Math.min(5000, s.tasks - first);
      const ids = Array.from({ length: n }, (_, k) => `dash-${first + k}`);
      await client.runTasks({
        requests: ids.map((id) => ({ id, spec })),
        view: TaskView.BASIC,
      });
      live.push(...ids);
    }
    // Counted by listing (not timed): a watch would be cut off by this burst of 30,000 events.
    for (let running = 0; running < s.tasks; ) {
      if (Date.now() - t0 > 120_000) throw new Error(`${running}/${s.tasks} RUNNING after 120 s`);
      await new Promise((r) => setTimeout(r, 500));
      running = 0;
      let pageToken = "";
      do {
        const page = await client.listTasks({
          states: [TaskState.RUNNING],
          pageSize: 1000,
          pageToken,
        });
        running += page.tasks.length;
        pageToken = page.nextPageToken;
      } while (pageToken);
    }
    ctx.progress(`run ${run}: ${s.tasks} tasks RUNNING in ${Date.now() - t0} ms`);

    const pairs = Math.max(1, Math.round((s.rate * TICK_MS) / 1000 / EVENTS_PER_PAIR));
    const changes = churn(client, live, pairs, spec);
    await new Promise((r) => setTimeout(r, 2000)); // the churn's steady state
    const window = async () => {
      const rev0 = await currentRevision(client);
      const cpu0 = procStats(m.pid).cpuSeconds;
      const browser0 = browserCpu();
      await new Promise((r) => setTimeout(r, s.seconds * 1000));
      const cpu1 = procStats(m.pid).cpuSeconds;
      const browser1 = browserCpu();
      const rev1 = await currentRevision(client);
      return {
        [K.cpu]: ((cpu1 - cpu0) / s.seconds) * 100,
        [K.events]: Number(rev1 - rev0) / s.seconds,
        [K.browser]: (browserCpuBetween(browser0, browser1) / s.seconds) * 100,
      };
    };
    const without = async () => window();
    const withPage = async () => {
      const cpu0 = procStats(m.pid).cpuSeconds;
      const opened = Date.now();
      const page = await openPage(browser, m.address, s.tasks);
      const load = Date.now() - opened;
      const loadCpu = (procStats(m.pid).cpuSeconds - cpu0) * 1000;
      await new Promise((r) => setTimeout(r, 1000)); // past the load's last renders
      const figures = await window();
      const longest = await page.evaluate(() =>
        Math.max(0, ...(globalThis as unknown as { longTasks: number[] }).longTasks),
      );
      // The page kept up: it shows every task the manager has (the count stays at s.tasks
      // plus the finished ones), a moment after the last change.
      const total = await shownTotal(page);
      const expected = s.tasks + changes.runs();
      if (Math.abs(total - expected) > pairs * 4) {
        throw new Error(`the page shows ${total} tasks, the manager has about ${expected}`);
      }
      await page.close();
      return { ...figures, [K.load]: load, [K.loadCpu]: loadCpu, [K.longest]: longest };
    };
    const steady = (figures: Record<string, number>, phase: string) => {
      // Far more events than the churn makes: workers were taken for dead and tasks moved.
      if ((figures[K.events] ?? 0) > s.rate * 3) {
        throw new Error(
          `${phase}: ${Math.round(figures[K.events] ?? 0)} task events/s for a churn of ~${s.rate}: the cluster was not steady (workers taken for dead on an overloaded host?)`,
        );
      }
      return figures;
    };
    let withFigures: Record<string, number>;
    let withoutFigures: Record<string, number>;
    if (run % 2 === 1) {
      withoutFigures = steady(await without(), "without the page");
      withFigures = steady(await withPage(), "with the page");
    } else {
      withFigures = steady(await withPage(), "with the page");
      withoutFigures = steady(await without(), "without the page");
    }
    changes.stop();
    ctx.progress(
      `run ${run}: manager ${withoutFigures[K.cpu]?.toFixed(1)} % of a core without the page, ${withFigures[K.cpu]?.toFixed(1)} % with it (${withFigures[K.events]?.toFixed(0)} events/s; page loaded in ${withFigures[K.load]} ms)`,
    );
    return { figures: withFigures, baseline: withoutFigures };
  } finally {
    await host?.kill();
    await manager?.stop(5000);
    await shm.remove();
    await dir.remove();
  }
}

/** The dashboard scenario (see the top of this file). */
export async function dashboard(ctx: BenchContext): Promise<ScenarioOutcome> {
  const s = sizes(ctx);
  const built = await buildWeb();
  ctx.progress(
    `web built in ${built.ms} ms; ${s.tasks} tasks, ${s.rate} events/s, ${s.seconds} s windows`,
  );
  const browser = await launchChromium();
  try {
    const runs: { figures: Record<string, number>; baseline: Record<string, number> }[] = [];
    for (let run = 1; run <= ctx.runs; run++) runs.push(await oneRun(ctx, run, s, browser));
    const figures = medianOfRuns(runs.map((r) => r.figures));
    const baseline = medianOfRuns(runs.map((r) => r.baseline));
    const pageOnly = [K.load, K.loadCpu, K.longest];
    return {
      name: "dashboard",
      title: `manager CPU with the dashboard open on ${s.tasks} tasks at ~${s.rate} changes/s, against without`,
      figures: Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, round(v)])),
      baseline: Object.fromEntries(
        Object.entries(baseline)
          .filter(([k]) => !pageOnly.includes(k))
          .map(([k, v]) => [k, round(v)]),
      ),
      runs: runs.length,
      note: `one manager process (product defaults: tokens, metrics, fit) with ${s.workers} hollow workers (niced), ${s.tasks} tasks RUNNING, then every ${TICK_MS} ms ${Math.max(1, Math.round((s.rate * TICK_MS) / 1000 / EVENTS_PER_PAIR))} tasks stopped and as many run (events/s measured from the revision); each run measures ${s.seconds} s without any page and ${s.seconds} s with the dashboard open in headless Chromium on its live tasks table, in alternating order. Baseline: the same window without the page. The page's load (10 ListTasks pages, then WatchTasks and WatchWorkers) is measured apart.`,
      differences: {
        [K.cpu]: [
          `--heartbeat-timeout ${SLOW_HOST.heartbeatTimeoutMs / 1000}s --down-grace ${SLOW_HOST.downGraceMs / 1000}s (defaults 2 s and 1 s): everything shares two cores, and a starved hollow worker must not be taken for dead`,
          "workers are hollow (no containers; tasks RUNNING at once): the manager's side of the cluster is real, Docker is not",
          "the churn comes from the bench's own gRPC client (wide HTTP/2 windows), not the cube CLI",
          "the browser runs on the same 2-core machine as the manager and the hollow workers (on a real setup it is another machine): its CPU competes with the manager's",
          "one page; every further open page adds its own watch streams",
        ],
        [K.load]: [
          "headless Chromium on loopback (no network latency); the first load after the build",
        ],
      },
      goals: [],
      detail: { runs },
    };
  } finally {
    await browser.close();
  }
}
