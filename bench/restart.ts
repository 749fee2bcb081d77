/**
 * Restart: a manager whose store holds N tasks (100,000; quick 5,000) is killed with
 * SIGKILL and started again on the same data directory → time from the spawn until it
 * answers ListTasks. Baseline: the same on an empty data directory, so the ratio is the
 * price of the tasks alone (process start-up and module loading are in both).
 */
import { join } from "node:path";
import { create, toJson } from "@bufbuild/protobuf";
import { TaskSpecSchema } from "../gen/cube/v1/task_pb.js";
import { spawnChild } from "./children.js";
import { tempDir } from "./cleanup.js";
import { type ManagerProcess, spawnManager, taskClient, waitForListTasks } from "./cluster.js";
import { BENCH_LABEL, type BenchContext } from "./context.js";
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
    // Fill through the manager's own code (bench/manager-host.ts hands the tasks to the
    // function the RunTasks handler calls, 5,000 at a time), with no workers: every task stays PENDING.
    const t0 = Date.now();
    const host = await spawnChild({
      name: "manager host (fill)",
      script: "bench/manager-host.ts",
      env: { CUBE_DATA_DIR: full, CUBE_LISTEN: "127.0.0.1:0", CUBE_LOG_LEVEL: "warn" },
      stdin: true,
    });
    const spec = create(TaskSpecSchema, {
      name: "restart",
      image: "cube/httpd:local",
      resources: { cpu: 0.1, memoryBytes: 64n << 20n },
      labels: { [BENCH_LABEL]: ctx.runId },
    });
    host.send({
      submit: {
        prefix: "restart-",
        count: n,
        batch: 5000,
        concurrency: 2,
        spec: toJson(TaskSpecSchema, spec),
        file: join(dir.path, "submitted.f64"),
      },
    });
    const answer = await host.nextLine();
    if (!answer?.submitted) {
      throw new Error(`the manager host did not fill the store: ${host.stderrTail().slice(-2000)}`);
    }
    // Every RunTask answered only once durable: SIGKILL loses nothing.
    await host.kill();
    const fillSeconds = (Date.now() - t0) / 1000;
    ctx.progress(`filled ${n} tasks in ${fillSeconds.toFixed(1)} s`);
    let manager: ManagerProcess | undefined;

    const cubeRuns: Record<string, number>[] = [];
    const bareRuns: Record<string, number>[] = [];
    for (let run = 1; run <= ctx.runs; run++) {
      await manager?.kill();
      const started = await timedStart(full);
      manager = started.manager;
      cubeRuns.push({ [K.answer]: started.ms });
      const emptyDir = join(dir.path, `empty-${run}`);
      const empty = await timedStart(emptyDir);
      await empty.manager.kill();
      bareRuns.push({ [K.answer]: empty.ms });
      ctx.progress(`run ${run}/${ctx.runs}: ${n} tasks ${started.ms} ms, empty ${empty.ms} ms`);
    }
    if (!manager) throw new Error("no run");
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
        `${n} PENDING tasks stored by the manager's own RunTasks code (bench/manager-host.ts, batches of 5,000, no workers), the manager SIGKILLed, then manager/main.ts started on the same directory: ` +
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
