/**
 * Restart: a manager whose store holds N tasks (100,000; quick 5,000) is killed with
 * SIGKILL and started again on the same data directory → time from the spawn until it
 * answers ListTasks. Baseline: the same on an empty data directory, so the ratio is the
 * price of the tasks alone (process start-up and module loading are in both).
 */
import { join } from "node:path";
import { tempDir } from "./cleanup.js";
import { type ManagerProcess, spawnManager, taskClient, waitForListTasks } from "./cluster.js";
import { BENCH_LABEL, type BenchContext } from "./context.js";
import { runPool } from "./pool.js";
import type { ScenarioOutcome } from "./result.js";
import { medianOfRuns } from "./stats.js";

const K = { answer: "SIGKILL, start → ListTasks answered (ms)" };

/** Spawns a manager on `dataDir`; resolves with it and the ms until ListTasks answered. */
async function timedStart(dataDir: string): Promise<{ manager: ManagerProcess; ms: number }> {
  const t0 = Date.now();
  const manager = await spawnManager({ dataDir });
  const at = await waitForListTasks(manager.address, 60_000);
  return { manager, ms: at - t0 };
}

/** Counts the tasks a manager lists, paging through all of them. */
async function countTasks(address: string): Promise<number> {
  const client = taskClient(address);
  let n = 0;
  let pageToken = "";
  do {
    const page = await client.listTasks({ pageSize: 1000, pageToken });
    n += page.tasks.length;
    pageToken = page.nextPageToken;
  } while (pageToken);
  return n;
}

/** Runs the restart scenario. */
export async function restart(ctx: BenchContext): Promise<ScenarioOutcome> {
  const n = ctx.overrides["restart-tasks"] ?? (ctx.quick ? 5000 : 100_000);
  const dir = await tempDir("restart");
  const full = join(dir.path, "full");
  try {
    // Fill through the real API with no workers: every task stays PENDING, as stored.
    let manager = await spawnManager({ dataDir: full });
    const client = taskClient(manager.address);
    const t0 = Date.now();
    let done = 0;
    const tick = setInterval(() => ctx.progress(`filling: ${done}/${n} tasks`), 5000);
    try {
      await runPool(n, 256, async (i) => {
        await client.runTask({
          id: `restart-${i}`,
          spec: {
            name: `restart-${i % 100}`,
            image: "cube/httpd:local",
            resources: { cpu: 0.1, memoryBytes: 64n << 20n },
            labels: { [BENCH_LABEL]: ctx.runId, shard: String(i % 16) },
          },
        });
        done++;
      });
    } finally {
      clearInterval(tick);
    }
    const fillSeconds = (Date.now() - t0) / 1000;
    ctx.progress(
      `filled ${n} tasks in ${fillSeconds.toFixed(1)} s (${Math.round(n / fillSeconds)}/s)`,
    );

    const cubeRuns: Record<string, number>[] = [];
    const bareRuns: Record<string, number>[] = [];
    for (let run = 1; run <= ctx.runs; run++) {
      await manager.kill();
      const started = await timedStart(full);
      manager = started.manager;
      cubeRuns.push({ [K.answer]: started.ms });
      const emptyDir = join(dir.path, `empty-${run}`);
      const empty = await timedStart(emptyDir);
      await empty.manager.kill();
      bareRuns.push({ [K.answer]: empty.ms });
      ctx.progress(`run ${run}/${ctx.runs}: ${n} tasks ${started.ms} ms, empty ${empty.ms} ms`);
    }
    const listed = await countTasks(manager.address);
    await manager.kill();
    if (listed !== n)
      throw new Error(`after the restarts the manager lists ${listed} tasks, not ${n}`);
    return {
      name: "restart",
      title: `manager with ${n.toLocaleString("en-US")} tasks in LevelDB: SIGKILL, start → ListTasks`,
      figures: medianOfRuns(cubeRuns),
      baseline: medianOfRuns(bareRuns),
      runs: ctx.runs,
      note:
        `${n} PENDING tasks stored through RunTask (no workers; ${Math.round(n / fillSeconds)}/s), the manager SIGKILLed, then started again on the same directory: ` +
        "time from spawning `node --import=tsx manager/main.ts` to the first ListTasks answer (polled every 5 ms); all tasks listed afterwards. " +
        "Baseline: the same start on an empty data directory (process start-up and module loading are in both).",
      goals: [{ figure: K.answer, kind: "max", limit: 2000, text: "≤ 2000 ms" }],
      detail: {
        perRun: { cube: cubeRuns, empty: bareRuns },
        tasks: n,
        fillPerSecond: n / fillSeconds,
      },
    };
  } finally {
    await dir.remove();
  }
}
