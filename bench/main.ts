/**
 * `npm run bench` / `npm run bench:quick`: runs the scenarios (latency, throughput,
 * recovery, restart), prints a table and writes bench/results/latest.json (and, for a
 * full run, full.json). Flags: --quick, --only=latency,restart, --runs=N,
 * --profile (CPU profile of the manager under throughput), and size overrides
 * --workers=N --tasks=N --grpc-tasks=N --hosts=N --concurrency=N --connections=N
 * --latency-tasks=N --recovery-tasks=N --restart-tasks=N (also --single-tasks=N --batch=N
 * --inflight=N), and for throughput --modes=grpc,in-process and --client=cube|wide-window
 * (cube, the default: submits through the cube CLI's client; wide-window: the bench's own,
 * printed as a difference next to the figures).
 * Every child process and container it made is removed at the end, on failure and
 * on Ctrl-C too. Exits 1 when a scenario could not run; timings never fail a run.
 */
import { randomBytes } from "node:crypto";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import Docker from "dockerode";
import { removeLabelled } from "../worker/docker/remove-labelled.js";
import { cleanUp, deferCleanup } from "./cleanup.js";
import { BENCH_CONTAINER_LABEL, type BenchContext } from "./context.js";
import { dashboard } from "./dashboard.js";
import { jobs } from "./jobs.js";
import { latency } from "./latency.js";
import { describeMachine } from "./machine.js";
import { metricsScrape } from "./metrics-scrape.js";
import { recovery } from "./recovery.js";
import { type Report, renderMarkdown, renderTable, writeReport } from "./report.js";
import { restart } from "./restart.js";
import { failed, finish, type ScenarioOutcome, type ScenarioResult } from "./result.js";
import { throughput } from "./throughput.js";

type Scenario = (ctx: BenchContext) => Promise<ScenarioOutcome>;

const SCENARIOS: Record<string, { title: string; run: Scenario }> = {
  latency: { title: "submit → RUNNING → first HTTP 200, against bare Docker", run: latency },
  throughput: { title: "placements on hollow workers", run: throughput },
  recovery: { title: "worker kill -9 and container kill, time to RUNNING again", run: recovery },
  restart: { title: "manager SIGKILL with a full store, time to answer ListTasks", run: restart },
  "metrics-scrape": { title: "GET /metrics with 100,000 tasks", run: metricsScrape },
  dashboard: { title: "manager CPU with the web dashboard open, against without", run: dashboard },
  jobs: {
    title: "jobs: rolling update against Swarm, scale to 10,000 replicas, drain",
    run: jobs,
  },
};

/**
 * Hard limits on a whole run: a hung scenario must not hang CI. Quick: 150 s, and 90 s more
 * for the dashboard scenario (a browser, a manager and hollow workers to start on a loaded
 * 2-core machine: ~55 s seen).
 */
const DEADLINE_MS = { quick: 240_000, full: 45 * 60_000 };

interface Args {
  quick: boolean;
  only: string[];
  runs?: number;
  profile: boolean;
  overrides: Record<string, number>;
  flags: Record<string, string>;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { quick: false, only: [], profile: false, overrides: {}, flags: {} };
  for (const arg of argv) {
    const [flag, value] = arg.split("=", 2) as [string, string | undefined];
    if (flag === "--quick") args.quick = true;
    else if (flag === "--profile") args.profile = true;
    else if (flag === "--only" && value) args.only = value.split(",").filter(Boolean);
    else if (flag === "--runs" && value && Number(value) >= 1)
      args.runs = Math.floor(Number(value));
    else if (flag.startsWith("--") && value !== undefined && /^\d+$/.test(value)) {
      args.overrides[flag.slice(2)] = Number(value);
    } else if (flag.startsWith("--") && value) {
      args.flags[flag.slice(2)] = value;
    } else {
      throw new Error(`unknown argument ${arg} (see the top of bench/main.ts)`);
    }
  }
  for (const name of args.only) {
    if (!SCENARIOS[name]) {
      throw new Error(`unknown scenario ${name}; known: ${Object.keys(SCENARIOS).join(", ")}`);
    }
  }
  return args;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const runId = `${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, "")}-${randomBytes(3).toString("hex")}`;
  const docker = new Docker();
  await docker.ping().catch((error: Error) => {
    throw new Error(`no Docker engine answers (${error.message}): run \`npm run setup\` first`);
  });
  // Leftovers of an earlier run that was killed before it could clean up.
  const stale = await removeLabelled(docker, BENCH_CONTAINER_LABEL);
  if (stale > 0)
    process.stderr.write(`bench: removed ${stale} containers left by an earlier run\n`);
  deferCleanup("bench containers", () =>
    removeLabelled(docker, `${BENCH_CONTAINER_LABEL}=${runId}`),
  );
  const machine = await describeMachine(docker);
  const loadAtStart = loadavg();
  if ((loadAtStart[0] ?? 0) > machine.cores / 2) {
    process.stderr.write(
      `bench: load average ${loadAtStart[0]?.toFixed(2)} on ${machine.cores} cores: other work will skew the figures\n`,
    );
  }
  const mode = args.quick ? "quick" : "full";
  const profileDir = args.profile
    ? fileURLToPath(new URL(`./results/profiles/${runId}`, import.meta.url))
    : undefined;

  const names = args.only.length > 0 ? args.only : Object.keys(SCENARIOS);
  const results: ScenarioResult[] = [];
  for (const name of names) {
    const scenario = SCENARIOS[name] as { title: string; run: Scenario };
    const ctx: BenchContext = {
      quick: args.quick,
      runs: args.runs ?? (args.quick ? 1 : 3),
      runId,
      docker,
      ...(profileDir ? { profileDir } : {}),
      overrides: args.overrides,
      flags: args.flags,
      progress: (message) => process.stderr.write(`bench ${name}: ${message}\n`),
    };
    const t0 = Date.now();
    ctx.progress(`starting (${mode}, ${ctx.runs} run${ctx.runs === 1 ? "" : "s"})`);
    try {
      results.push(finish(await scenario.run(ctx), !args.quick));
    } catch (error) {
      ctx.progress(`FAILED: ${(error as Error).stack ?? String(error)}`);
      results.push(failed(name, scenario.title, error));
    } finally {
      // Each scenario leaves nothing behind for the next one to trip over.
      await cleanUp();
      deferCleanup("bench containers", () =>
        removeLabelled(docker, `${BENCH_CONTAINER_LABEL}=${runId}`),
      );
    }
    ctx.progress(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }

  const report: Report = {
    mode,
    date: new Date(started).toISOString(),
    command: `npm run ${args.quick ? "bench:quick" : "bench"}${
      process.argv.length > 2
        ? ` -- ${process.argv
            .slice(2)
            .filter((a) => a !== "--quick")
            .join(" ")}`
        : ""
    }`.trim(),
    machine,
    loadAtStart,
    seconds: (Date.now() - started) / 1000,
    scenarios: results,
  };
  process.stdout.write(`${renderTable(report)}\n`);
  const resultsDir = fileURLToPath(new URL("./results/", import.meta.url));
  await writeReport(report, `${resultsDir}latest.json`);
  if (!args.quick) {
    // Kept apart, so that a quick run (CI, a check) never overwrites the full figures.
    await writeReport(report, `${resultsDir}full.json`);
    process.stdout.write(`\nMarkdown (for the README):\n\n${renderMarkdown(report)}\n`);
  }
  process.stdout.write(
    `\nwrote bench/results/latest.json${args.quick ? "" : " and bench/results/full.json"}\n`,
  );
  return results.some((r) => r.runs === 0) ? 1 : 0;
}

let exiting = false;
async function exit(code: number): Promise<never> {
  if (!exiting) {
    exiting = true;
    await cleanUp();
  }
  process.exit(code);
}

// A waiter that timed out after its scenario already failed must not take the run down
// (and skip the clean-up): say so and carry on.
process.on("unhandledRejection", (reason) => {
  process.stderr.write(`bench: late failure (ignored): ${(reason as Error)?.message ?? reason}\n`);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    process.stderr.write(`bench: ${signal}, cleaning up\n`);
    void exit(130);
  });
}
const quick = process.argv.includes("--quick");
setTimeout(
  () => {
    process.stderr.write("bench: over the time limit, cleaning up\n");
    void exit(2);
  },
  quick ? DEADLINE_MS.quick : DEADLINE_MS.full,
).unref();

main().then(
  (code) => exit(code),
  (error: unknown) => {
    process.stderr.write(`bench: ${(error as Error).stack ?? String(error)}\n`);
    void exit(1);
  },
);
