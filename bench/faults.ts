/**
 * `npm run faults` (`-- --quick` for CI; `--only=workers,engine,manager-kill,partition`):
 * issue 17's fault suite. Real manager and worker processes on the real Docker engine
 * (image cube/httpd:local); each fault injected and timed — time to heal, tasks lost,
 * duplicate containers, needless restarts (containers replaced) — and printed next to its
 * goal from issue 17, missed goals named plainly at the end. Writes
 * bench/results/faults.json and faults.md (quick: faults-quick.json/.md).
 * Exits 1 only when a fault could not be run; a missed goal is a figure, not a failure.
 * Everything it made (processes, containers, the network namespace and its veth pair,
 * temp folders) is removed at the end, on failure and on Ctrl-C too.
 */
import { randomBytes } from "node:crypto";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import Docker from "dockerode";
import { removeLabelled } from "../worker/docker/remove-labelled.js";
import { DEFAULT_SANDBOX_IMAGE, DEFAULT_WARM_SANDBOXES } from "../worker/docker/sandbox-pool.js";
import { cleanUp, deferCleanup, tempDir } from "./cleanup.js";
import { BENCH_CONTAINER_LABEL } from "./context.js";
import { NetNs } from "./faults-kit.js";
import {
  type FaultReport,
  type FaultResult,
  renderMarkdown,
  renderTable,
  writeFaultReport,
} from "./faults-report.js";
import {
  DEFAULTS,
  engineFault,
  type FaultContext,
  HTTP_IMAGE,
  managerKillFault,
  partitionFaults,
  workerFaults,
} from "./faults-scenarios.js";
import { describeMachine } from "./machine.js";

const GROUPS: Record<string, (ctx: FaultContext) => Promise<FaultResult | FaultResult[]>> = {
  workers: workerFaults,
  engine: engineFault,
  "manager-kill": managerKillFault,
  partition: partitionFaults,
};

/** Hard limits on a whole run: a hung fault must not hang CI. */
const DEADLINE_MS = { quick: 240_000, full: 20 * 60_000 };

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const quick = argv.includes("--quick");
  const only = (argv.find((a) => a.startsWith("--only="))?.slice(7) ?? "")
    .split(",")
    .filter(Boolean);
  for (const a of argv) {
    if (a !== "--quick" && !a.startsWith("--only=")) throw new Error(`unknown argument ${a}`);
  }
  for (const name of only) {
    if (!GROUPS[name]) throw new Error(`unknown fault group ${name}: ${Object.keys(GROUPS)}`);
  }
  const started = Date.now();
  const runId = `faults-${randomBytes(3).toString("hex")}`;
  const docker = new Docker();
  await docker.ping().catch((error: Error) => {
    throw new Error(`no Docker engine answers (${error.message}): run \`npm run setup\` first`);
  });
  await docker
    .getImage(HTTP_IMAGE)
    .inspect()
    .catch(() => {
      throw new Error(`image ${HTTP_IMAGE} is missing: run \`npm run setup\` first`);
    });
  await NetNs.removeStale();
  // Only an earlier fault run's leftovers (label value faults-…): a bench running beside
  // this suite keeps its containers.
  const leftovers = (
    await docker.listContainers({ all: true, filters: { label: [BENCH_CONTAINER_LABEL] } })
  ).filter((c) => c.Labels[BENCH_CONTAINER_LABEL]?.startsWith("faults-"));
  for (const c of leftovers) {
    await docker
      .getContainer(c.Id)
      .remove({ force: true })
      .catch(() => undefined);
  }
  if (leftovers.length > 0) {
    process.stderr.write(`faults: removed ${leftovers.length} containers left by a fault run\n`);
  }
  const machine = await describeMachine(docker);
  const loadAtStart = loadavg();
  if ((loadAtStart[0] ?? 0) > machine.cores / 2) {
    process.stderr.write(
      `faults: load average ${loadAtStart[0]?.toFixed(2)} on ${machine.cores} cores: other work will skew the timings\n`,
    );
  }
  const faults: FaultResult[] = [];
  for (const name of only.length > 0 ? only : Object.keys(GROUPS)) {
    const dir = await tempDir(`faults-${name}`);
    deferCleanup("fault containers", () =>
      removeLabelled(docker, `${BENCH_CONTAINER_LABEL}=${runId}`),
    );
    const ctx: FaultContext = {
      quick,
      docker,
      runId,
      dir: dir.path,
      progress: (m) => process.stderr.write(`faults ${name}: ${m}\n`),
    };
    try {
      const r = await (GROUPS[name] as (typeof GROUPS)[string])(ctx);
      faults.push(...(Array.isArray(r) ? r : [r]));
    } catch (error) {
      ctx.progress(`FAILED: ${(error as Error).stack ?? String(error)}`);
      faults.push({
        name,
        how: "could not be set up",
        figures: [],
        error: (error as Error).message.split("\n")[0] ?? "failed",
      });
    } finally {
      await cleanUp();
    }
  }
  const report: FaultReport = {
    mode: quick ? "quick" : "full",
    date: new Date(started).toISOString(),
    command: `npm run faults${argv.length > 0 ? ` -- ${argv.join(" ")}` : ""}`,
    machine,
    loadAtStart,
    seconds: (Date.now() - started) / 1000,
    settings: `the product's defaults: heartbeat timeout ${DEFAULTS.heartbeatTimeoutMs} ms, down grace ${DEFAULTS.downGraceMs} ms, start-up grace ${DEFAULTS.startupGraceMs} ms, restart grace 30 s; auth on (admin token for the suite's client, join token for workers); workers: ${DEFAULT_WARM_SANDBOXES} warm network sandboxes each (${DEFAULT_SANDBOX_IMAGE})`,
    faults,
  };
  process.stdout.write(`${renderTable(report)}\n`);
  const base = fileURLToPath(new URL(`./results/faults${quick ? "-quick" : ""}`, import.meta.url));
  await writeFaultReport(report, `${base}.json`);
  if (!quick) process.stdout.write(`\nMarkdown:\n\n${renderMarkdown(report)}\n`);
  process.stdout.write(`\nwrote bench/results/faults${quick ? "-quick" : ""}.json and .md\n`);
  return faults.some((f) => f.error && !f.skipped) ? 1 : 0;
}

let exiting = false;
async function exit(code: number): Promise<never> {
  if (!exiting) {
    exiting = true;
    await cleanUp();
  }
  process.exit(code);
}

process.on("unhandledRejection", (reason) => {
  process.stderr.write(`faults: late failure (ignored): ${(reason as Error)?.message ?? reason}\n`);
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    process.stderr.write(`faults: ${signal}, cleaning up\n`);
    void exit(130);
  });
}
setTimeout(
  () => {
    process.stderr.write("faults: over the time limit, cleaning up\n");
    void exit(2);
  },
  process.argv.includes("--quick") ? DEADLINE_MS.quick : DEADLINE_MS.full,
).unref();

main().then(
  (code) => exit(code),
  (error: unknown) => {
    process.stderr.write(`faults: ${(error as Error).stack ?? String(error)}\n`);
    void exit(1);
  },
);
