/**
 * Latency: tasks of the local HTTP image, one at a time, submit → RUNNING (as a
 * WatchTasks client sees it) and submit → first HTTP 200 on the published port, against
 * bare dockerode create + start + inspect of the same container body, interleaved in the
 * same run so both see the same engine state.
 */
import { join } from "node:path";
import type { TaskEvent } from "../gen/cube/v1/task_pb.js";
import { removeLabelled } from "../worker/docker/remove-labelled.js";
import { tempDir } from "./cleanup.js";
import {
  currentRevision,
  isRunning,
  type SpecInit,
  spawnManager,
  spawnWorker,
  taskClient,
  waitForWorkers,
  watchTasks,
} from "./cluster.js";
import { BENCH_CONTAINER_LABEL, BENCH_LABEL, type BenchContext } from "./context.js";
import { bareRun } from "./docker-bare.js";
import { firstHttp200 } from "./http-probe.js";
import type { ScenarioOutcome } from "./result.js";
import { medianOfRuns, percentile } from "./stats.js";

const IMAGE = "cube/httpd:local";
const K = {
  running50: "submit → RUNNING p50 (ms)",
  running95: "submit → RUNNING p95 (ms)",
  http50: "submit → HTTP 200 p50 (ms)",
  http95: "submit → HTTP 200 p95 (ms)",
};

interface Samples {
  running: number[];
  http: number[];
}

function figures(s: Samples): Record<string, number> {
  return {
    [K.running50]: percentile(s.running, 50),
    [K.running95]: percentile(s.running, 95),
    [K.http50]: percentile(s.http, 50),
    [K.http95]: percentile(s.http, 95),
  };
}

/** Runs the latency scenario: `ctx.runs` runs of N tasks each (20; quick 5). */
export async function latency(ctx: BenchContext): Promise<ScenarioOutcome> {
  const n = ctx.overrides["latency-tasks"] ?? (ctx.quick ? 5 : 20);
  const cubeRuns: Record<string, number>[] = [];
  const bareRuns: Record<string, number>[] = [];
  for (let run = 1; run <= ctx.runs; run++) {
    const { cube, bare } = await oneRun(ctx, run, n);
    cubeRuns.push(figures(cube));
    bareRuns.push(figures(bare));
    ctx.progress(
      `run ${run}/${ctx.runs}: RUNNING p50 cube ${cubeRuns.at(-1)?.[K.running50]} ms, bare ${bareRuns.at(-1)?.[K.running50]} ms`,
    );
  }
  return {
    name: "latency",
    title: `${n} tasks of ${IMAGE}, one at a time: submit → RUNNING and → first HTTP 200`,
    figures: medianOfRuns(cubeRuns),
    baseline: medianOfRuns(bareRuns),
    runs: ctx.runs,
    note:
      `${n} tasks per run, submitted one at a time to a manager and one worker (separate processes, loopback); ` +
      "RUNNING = the WatchTasks event reaching the client; HTTP 200 = first GET /health answered 200 on the published port (polled every 2 ms). " +
      "Baseline: bare dockerode create + start + inspect of the same container body (worker/docker-container-spec.ts), interleaved with cube's tasks in the same run; " +
      'its "RUNNING" is when start + inspect returned.',
    goals: [K.running50, K.running95, K.http50, K.http95].map((figure) => ({
      figure,
      ofRatio: true,
      kind: "max" as const,
      limit: 1.15,
      text: "≤ 1.15× bare",
    })),
    detail: { perRun: { cube: cubeRuns, bare: bareRuns }, tasksPerRun: n },
  };
}

async function oneRun(
  ctx: BenchContext,
  run: number,
  n: number,
): Promise<{ cube: Samples; bare: Samples }> {
  const dir = await tempDir("latency");
  const label = `${BENCH_CONTAINER_LABEL}=${ctx.runId}`;
  const manager = await spawnManager({ dataDir: join(dir.path, "manager") });
  const worker = await spawnWorker(manager.address, join(dir.path, "worker"), "latency-worker");
  await waitForWorkers(manager.address, 1, 20_000);
  const client = taskClient(manager.address);
  const running = new Map<string, (e: { event: TaskEvent; at: number }) => void>();
  const watch = watchTasks(client, await currentRevision(client), (event, at) => {
    if (!isRunning(event)) return;
    const id = event.task?.id ?? "";
    running.get(id)?.({ event, at });
    running.delete(id);
  });
  const spec = (i: number): SpecInit => ({
    name: `latency-${i}`,
    image: IMAGE,
    ports: [{ containerPort: 80 }],
    labels: { [BENCH_LABEL]: ctx.runId },
  });
  const viaCube = async (id: string, i: number) => {
    const seen = new Promise<{ event: TaskEvent; at: number }>((resolve, reject) => {
      running.set(id, resolve);
      setTimeout(() => reject(new Error(`task ${id} not RUNNING within 30 s`)), 30_000).unref();
    });
    seen.catch(() => undefined); // awaited below; a RunTask failure must not leave it unhandled
    const t0 = Date.now();
    await client.runTask({ id, spec: spec(i) });
    const { event, at } = await seen;
    const port = event.task?.ports[0]?.hostPort;
    if (!port) throw new Error(`task ${id} is RUNNING without a published port`);
    const ok = await firstHttp200(port);
    return { running: at - t0, http: ok - t0 };
  };
  const viaDocker = async (name: string, i: number) => {
    const t0 = Date.now();
    const c = await bareRun(ctx.docker, name, spec(i));
    const at = Date.now();
    const ok = await firstHttp200(c.hostPort);
    return { running: at - t0, http: ok - t0 };
  };
  const cube: Samples = { running: [], http: [] };
  const bare: Samples = { running: [], http: [] };
  try {
    // One unmeasured round each: the first create on a fresh worker pays for lazy set-up.
    await viaCube(`lat-${run}-warm`, -1);
    await viaDocker(`bare-${ctx.runId}-${run}-warm`, -1);
    for (let i = 0; i < n; i++) {
      // Alternate who goes first, so neither always meets the engine right after the other.
      const order = i % 2 === 0 ? ["cube", "bare"] : ["bare", "cube"];
      for (const side of order) {
        if (side === "cube") {
          const s = await viaCube(`lat-${run}-${i}`, i);
          cube.running.push(s.running);
          cube.http.push(s.http);
        } else {
          const s = await viaDocker(`bare-${ctx.runId}-${run}-${i}`, i);
          bare.running.push(s.running);
          bare.http.push(s.http);
        }
      }
    }
  } finally {
    watch.stop();
    await worker.kill();
    await manager.kill();
    await removeLabelled(ctx.docker, label);
    await dir.remove();
  }
  return { cube, bare };
}
