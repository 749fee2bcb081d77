/**
 * Jobs (issue 14), three measurements per run:
 *  - rolling update: a job of 20 replicas of cube/httpd:local (HTTP health check every
 *    250 ms), v1 → v2 with max_parallel 2 and min_healthy_time 0, on one real worker process
 *    → time from ApplyJob to every replica of v2 healthy (the deployment SUCCESSFUL, from
 *    WatchJobs). Baseline: `docker service update --image … --update-parallelism 2` of a
 *    20-replica Swarm service on the same engine (the same image, a Docker health check every
 *    250 ms, Swarm's default stop-first order, update delay 0) → time until Docker shows 20
 *    healthy containers of the new image and none of the old. Full runs only: the Swarm part
 *    makes the engine a single-node swarm for the measurement (left again afterwards, unless
 *    it was one already).
 *  - scale: a job scaled 0 → 10,000 replicas on 1,000 hollow workers (bench/hollow-host.ts)
 *    → time until 10,000 RUNNING (WatchJobs), and the manager's CPU per replica. Baseline: the
 *    same number of plain tasks through RunTasks (batches of 5,000) on the same cluster.
 *  - drain: a job of 10 replicas on a worker, a second worker joins, `DrainNode` of the first →
 *    time until the drain is COMPLETE and the 10 replicas are healthy on the other. Baseline:
 *    bare create + start of 10 containers at once (the engine's share of moving them).
 * Quick runs (CI): 4 replicas updated, no Swarm, 100 hollow workers × 1,000 replicas, 3 drained.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient } from "@connectrpc/connect";
import type Docker from "dockerode";
import {
  DeploymentStatus,
  type Job,
  type JobSpecSchema,
  JobStatus,
} from "../gen/cube/v1/job_pb.js";
import { JobService } from "../gen/cube/v1/job_service_pb.js";
import { DrainStatus, NodeService } from "../gen/cube/v1/node_service_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { removeWorkerContainers } from "../worker/docker/remove-labelled.js";
import { type Child, spawnChild } from "./children.js";
import { deferCleanup, tempDir } from "./cleanup.js";
import {
  adminTokenOf,
  joinTokenOf,
  spawnManager,
  spawnWorker,
  type WorkerProcess,
  waitForWorkers,
} from "./cluster.js";
import { BENCH_CONTAINER_LABEL, BENCH_LABEL, type BenchContext } from "./context.js";
import { bareParallelStart } from "./docker-bare.js";
import { procStats } from "./proc-stats.js";
import type { ScenarioOutcome } from "./result.js";
import { medianOfRuns } from "./stats.js";

const run = promisify(execFile);
const IMAGE = "cube/httpd:local";
const V2 = "cube/httpd:v2";

const K = {
  update: "rolling update v1 → v2, all new replicas healthy (ms)",
  scale: "scale 0 → N replicas, all RUNNING (ms)",
  scaleCpu: "manager CPU per replica while scaling (µs)",
  drain: "drain of a worker → all its replicas healthy elsewhere (ms)",
};

interface Sizes {
  updateReplicas: number;
  workers: number;
  replicas: number;
  drainReplicas: number;
  swarm: boolean;
}

/** Runs the jobs scenario. */
export async function jobs(ctx: BenchContext): Promise<ScenarioOutcome> {
  const o = ctx.overrides;
  const s: Sizes = {
    updateReplicas: o["update-replicas"] ?? (ctx.quick ? 4 : 20),
    workers: o["job-workers"] ?? (ctx.quick ? 100 : 1000),
    replicas: o["job-replicas"] ?? (ctx.quick ? 1000 : 10_000),
    drainReplicas: o["drain-replicas"] ?? (ctx.quick ? 3 : 10),
    swarm: !ctx.quick && ctx.flags.swarm !== "no",
  };
  // --jobs-parts=update,scale,drain (default all): to measure one part again.
  const parts = new Set((ctx.flags["jobs-parts"] ?? "update,scale,drain").split(","));
  await run("docker", ["tag", IMAGE, V2]);
  const cube: Record<string, number>[] = [];
  const base: Record<string, number>[] = [];
  for (let i = 1; i <= ctx.runs; i++) {
    const f: Record<string, number> = {};
    const b: Record<string, number> = {};
    if (parts.has("update")) {
      f[K.update] = await cubeUpdate(ctx, i, s.updateReplicas);
      if (s.swarm) b[K.update] = await swarmUpdate(ctx, i, s.updateReplicas);
      ctx.progress(
        `run ${i}: update of ${s.updateReplicas}: cube ${f[K.update]} ms, Swarm ${b[K.update] ?? "-"} ms`,
      );
    }
    if (parts.has("scale")) {
      const scaled = await scale(ctx, i, s);
      Object.assign(f, scaled.figures);
      Object.assign(b, scaled.baseline);
      ctx.progress(
        `run ${i}: scale 0 → ${s.replicas} on ${s.workers} hollow workers: ${f[K.scale]} ms (${Math.round(f[K.scaleCpu] ?? 0)} µs CPU/replica); RunTasks ${b[K.scale]} ms`,
      );
    }
    if (parts.has("drain")) {
      f[K.drain] = await drain(ctx, i, s.drainReplicas);
      b[K.drain] = await bareParallelStart(
        ctx.docker,
        `bare-drain-${ctx.runId}-${i}`,
        s.drainReplicas,
        {
          image: IMAGE,
          ports: [{ containerPort: 80 }],
          resources: { memoryBytes: 16n << 20n },
          labels: { [BENCH_LABEL]: ctx.runId },
        },
      );
      ctx.progress(
        `run ${i}: drain of ${s.drainReplicas}: ${f[K.drain]} ms (bare starts ${b[K.drain]} ms)`,
      );
    }
    cube.push(f);
    base.push(b);
  }
  return {
    name: "jobs",
    title: `jobs: rolling update of ${s.updateReplicas}, scale 0 → ${s.replicas.toLocaleString("en-US")} on ${s.workers.toLocaleString("en-US")} hollow workers, drain of ${s.drainReplicas}`,
    figures: medianOfRuns(cube),
    baseline: medianOfRuns(base),
    runs: ctx.runs,
    note:
      `Rolling update: one worker process on this engine, ${s.updateReplicas} replicas with an HTTP health check every 250 ms, max_parallel 2, min_healthy_time 0, from the ApplyJob answer to the deployment SUCCESSFUL; ` +
      (s.swarm
        ? `baseline: a ${s.updateReplicas}-replica Swarm service (single-node swarm on the same engine, --init as cube's containers have, Docker health check every 250 ms, --update-parallelism 2, delay 0, stop-first, the default 5 s update monitor), \`docker service update --image\` → ${s.updateReplicas} healthy containers of the new image, none of the old (Docker polled every 100 ms). `
        : "no Swarm baseline (quick run). ") +
      `Scale: ${s.workers} hollow workers (as in throughput), ScaleJob 0 → ${s.replicas} → counts.running = ${s.replicas} on WatchJobs; manager CPU from /proc; baseline: the same number of plain tasks by RunTasks in batches of 5,000 on the same cluster, until none is PENDING or SCHEDULED. ` +
      `Drain: ${s.drainReplicas} replicas (health check every 250 ms, max_parallel 2, min_healthy_time 0) on one worker process, a second joins, DrainNode of the first → drain COMPLETE with every replica healthy on the second; baseline: bare create + start of as many containers at once.`,
    goals: s.swarm
      ? [{ figure: K.update, ofRatio: true, kind: "max", limit: 0.5, text: "≤ 0.5× Swarm" }]
      : [],
    detail: { perRun: { cube, baseline: base }, sizes: s },
  };
}

/** A job spec of `count` health-checked replicas of `image`. */
function jobSpec(
  ctx: BenchContext,
  name: string,
  image: string,
  count: number,
): MessageInitShape<typeof JobSpecSchema> {
  return {
    name,
    count,
    template: {
      image,
      ports: [{ containerPort: 80 }],
      healthCheck: { path: "/health", interval: durationFromMs(250), failureThreshold: 3 },
      resources: { memoryBytes: 16n << 20n },
      labels: { [BENCH_LABEL]: ctx.runId },
    },
    update: {
      maxParallel: 2,
      minHealthyTime: durationFromMs(0),
      healthyDeadline: durationFromMs(120_000),
    },
  };
}

function clients(address: string) {
  const transport = grpcTransport(address, { token: adminTokenOf(address) });
  return {
    jobs: createClient(JobService, transport),
    nodes: createClient(NodeService, transport),
    tasks: createClient(TaskService, transport),
  };
}

/** Resolves with Date.now() once the job satisfies `done` (WatchJobs). */
async function until(
  jobs: Client<typeof JobService>,
  name: string,
  done: (job: Job) => boolean,
  timeoutMs: number,
): Promise<number> {
  const signal = AbortSignal.timeout(timeoutMs);
  let last: Job | undefined;
  try {
    for await (const { job } of jobs.watchJobs({ name }, { signal })) {
      last = job;
      if (job && done(job)) return Date.now();
    }
  } catch (error) {
    if (!signal.aborted) throw error;
  }
  throw new Error(`job ${name} not done after ${timeoutMs} ms: ${last?.statusReason}`);
}

const deployed = (version: bigint) => (job: Job) =>
  job.version === version &&
  job.deployment?.status === DeploymentStatus.SUCCESSFUL &&
  job.status === JobStatus.RUNNING;

async function cubeUpdate(ctx: BenchContext, i: number, replicas: number): Promise<number> {
  const dir = await tempDir("jobs-update");
  const manager = await spawnManager({ dataDir: join(dir.path, "manager") });
  let worker: WorkerProcess | undefined;
  try {
    worker = await spawnWorker(manager.address, join(dir.path, "w"), `jobs-update-${i}`);
    await waitForWorkers(manager.address, 1, 20_000);
    const { jobs } = clients(manager.address);
    const name = `upd-${i}`;
    await jobs.applyJob({ spec: jobSpec(ctx, name, IMAGE, replicas) });
    await until(jobs, name, deployed(1n), 180_000);
    const t0 = Date.now();
    await jobs.applyJob({ spec: jobSpec(ctx, name, V2, replicas) });
    return (await until(jobs, name, deployed(2n), 300_000)) - t0;
  } finally {
    await worker?.kill();
    await manager.kill();
    if (worker) await removeWorkerContainers(ctx.docker, worker.id);
    await dir.remove();
  }
}

/** The same update by Swarm: a single-node swarm on this engine, made and left here. */
async function swarmUpdate(ctx: BenchContext, i: number, replicas: number): Promise<number> {
  const info = (await ctx.docker.info()) as { Swarm?: { LocalNodeState?: string } };
  const wasSwarm = info.Swarm?.LocalNodeState === "active";
  if (!wasSwarm) await run("docker", ["swarm", "init", "--advertise-addr", "127.0.0.1"]);
  const leave = wasSwarm
    ? async () => undefined
    : async () => {
        await run("docker", ["swarm", "leave", "--force"]).catch(() => undefined);
      };
  const name = `cube-bench-${ctx.runId}-${i}`;
  const undo = deferCleanup("swarm service", async () => {
    await run("docker", ["service", "rm", name]).catch(() => undefined);
    await leave();
  });
  try {
    await run("docker", [
      "service",
      "create",
      "--detach",
      "--no-resolve-image",
      "--name",
      name,
      "--replicas",
      String(replicas),
      // As cube's containers: an init as PID 1 forwards SIGTERM (busybox httpd as PID 1
      // ignores it, and every stop would take Swarm's 10 s grace period).
      "--init",
      "--health-cmd",
      "wget -q -O /dev/null http://127.0.0.1/health || exit 1",
      "--health-interval",
      "250ms",
      "--health-retries",
      "3",
      "--update-parallelism",
      "2",
      "--update-delay",
      "0s",
      "--container-label",
      `${BENCH_CONTAINER_LABEL}=${ctx.runId}`,
      IMAGE,
    ]);
    await swarmConverged(ctx.docker, name, IMAGE, replicas, 300_000);
    const t0 = Date.now();
    await run("docker", [
      "service",
      "update",
      "--detach",
      "--no-resolve-image",
      "--image",
      V2,
      name,
    ]);
    return (await swarmConverged(ctx.docker, name, V2, replicas, 300_000)) - t0;
  } finally {
    await undo();
  }
}

/** Date.now() once `count` containers of the service run `image` healthy, and no other runs. */
async function swarmConverged(
  docker: Docker,
  service: string,
  image: string,
  count: number,
  timeoutMs: number,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const list = await docker.listContainers({
      filters: { label: [`com.docker.swarm.service.name=${service}`], status: ["running"] },
    });
    const healthy = list.filter((c) => c.Image.startsWith(image) && /\(healthy\)/.test(c.Status));
    if (healthy.length === count && list.length === count) return Date.now();
    if (Date.now() > deadline) {
      throw new Error(`Swarm service ${service}: ${healthy.length}/${count} healthy on ${image}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Heartbeat timing of the scale run, as the throughput scenario's (hollow workers share the cores). */
const TIMING = {
  CUBE_HEARTBEAT_INTERVAL: "2000",
  CUBE_HEARTBEAT_TIMEOUT: "10000",
  CUBE_DOWN_GRACE: "10000",
};

async function scale(
  ctx: BenchContext,
  i: number,
  s: Sizes,
): Promise<{ figures: Record<string, number>; baseline: Record<string, number> }> {
  const dir = await tempDir("jobs-scale");
  const shm = await tempDir("hollow", "/dev/shm").catch(() => tempDir("hollow"));
  const manager = await spawnManager({ dataDir: join(dir.path, "manager"), env: { ...TIMING } });
  const hosts: Child[] = [];
  try {
    const nHosts = Math.max(1, Math.min(4, Math.ceil(s.workers / 250)));
    const perHost = Math.ceil(s.workers / nHosts);
    hosts.push(
      ...(await Promise.all(
        Array.from({ length: nHosts }, (_, h) =>
          spawnChild({
            name: `hollow host ${h}`,
            script: "bench/hollow-host.ts",
            nice: 10,
            env: {
              BENCH_MANAGER: manager.address,
              BENCH_COUNT: String(Math.min(perHost, s.workers - h * perHost)),
              BENCH_DIR: join(shm.path, `h${h}`),
              BENCH_HOST: String(h),
              BENCH_PING_TIMEOUT: TIMING.CUBE_HEARTBEAT_TIMEOUT,
              ...(joinTokenOf(manager.address)
                ? { BENCH_TOKEN: joinTokenOf(manager.address) as string }
                : {}),
            },
            readyTimeoutMs: 300_000,
          }),
        ),
      )),
    );
    await waitForWorkers(manager.address, s.workers, 180_000);
    const { jobs, tasks } = clients(manager.address);
    const name = `scale-${i}`;
    const template = {
      name: "hollow",
      image: IMAGE,
      resources: { cpu: 0.01, memoryBytes: 8n << 20n },
      labels: { [BENCH_LABEL]: ctx.runId },
    };
    await jobs.applyJob({ spec: { name, count: 0, template } });
    const cpu0 = procStats(manager.pid).cpuSeconds;
    const t0 = Date.now();
    await jobs.scaleJob({ name, count: s.replicas });
    const done = await until(jobs, name, (j) => (j.counts?.running ?? 0) >= s.replicas, 600_000);
    const cpu = procStats(manager.pid).cpuSeconds - cpu0;
    const figures = {
      [K.scale]: done - t0,
      [K.scaleCpu]: (cpu / s.replicas) * 1e6,
    };
    // Baseline: as many plain tasks by RunTasks, on the same cluster.
    const bCpu0 = procStats(manager.pid).cpuSeconds;
    const b0 = Date.now();
    for (let k = 0; k < s.replicas; k += 5000) {
      const n = Math.min(5000, s.replicas - k);
      await tasks.runTasks({
        requests: Array.from({ length: n }, (_, j) => ({
          id: `plain-${i}-${k + j}`,
          spec: template,
        })),
        view: 1,
      });
    }
    for (;;) {
      const page = await tasks.listTasks({ states: [1, 2], pageSize: 1 });
      if (page.tasks.length === 0) break;
      if (Date.now() - b0 > 600_000) throw new Error("plain tasks not RUNNING in 10 min");
      await new Promise((r) => setTimeout(r, 250));
    }
    const baseline = {
      [K.scale]: Date.now() - b0,
      [K.scaleCpu]: ((procStats(manager.pid).cpuSeconds - bCpu0) / s.replicas) * 1e6,
    };
    return { figures, baseline };
  } finally {
    for (const h of hosts) await h.kill();
    await manager.kill();
    await dir.remove();
    await shm.remove();
  }
}

async function drain(ctx: BenchContext, i: number, replicas: number): Promise<number> {
  const dir = await tempDir("jobs-drain");
  const manager = await spawnManager({ dataDir: join(dir.path, "manager") });
  const workers: WorkerProcess[] = [];
  try {
    workers.push(await spawnWorker(manager.address, join(dir.path, "a"), `drain-a-${i}`));
    await waitForWorkers(manager.address, 1, 20_000);
    const { jobs, nodes } = clients(manager.address);
    const name = `drain-${i}`;
    await jobs.applyJob({ spec: jobSpec(ctx, name, IMAGE, replicas) });
    await until(jobs, name, deployed(1n), 180_000);
    workers.push(await spawnWorker(manager.address, join(dir.path, "b"), `drain-b-${i}`));
    await waitForWorkers(manager.address, 2, 20_000);
    const a = workers[0] as WorkerProcess;
    const t0 = Date.now();
    await nodes.drainNode({ name: a.id, deadline: durationFromMs(300_000) });
    const deadline = t0 + 300_000;
    for (;;) {
      const { nodes: list } = await nodes.listNodes({});
      const { job } = await jobs.getJob({ name });
      const d = list.find((n) => n.worker?.id === a.id)?.drain;
      if (d?.status === DrainStatus.COMPLETE && job?.counts?.healthy === replicas) break;
      if (Date.now() > deadline) throw new Error(`drain not done: ${job?.statusReason}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return Date.now() - t0;
  } finally {
    for (const w of workers) await w.kill();
    await manager.kill();
    for (const w of workers) await removeWorkerContainers(ctx.docker, w.id);
    await dir.remove();
  }
}
