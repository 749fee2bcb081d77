/**
 * Recovery, on real worker processes and real containers:
 *  - a worker running its share of tasks is killed with SIGKILL → time until every one of
 *    its tasks is RUNNING on another worker;
 *  - a task's container is killed from outside, under restart policy "always" → time until
 *    the task is RUNNING again, once with `docker kill` and once with SIGKILL of the
 *    container's main process from the host (a crash). Baseline: Docker's own
 *    `--restart always` on the same container body, crashed the same way (Docker ignores
 *    its policy after `docker kill`, which counts as a manual stop), timed by its
 *    "start" event.
 */
import { join } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type Docker from "dockerode";
import {
  RestartMode,
  type RestartPolicySchema,
  type TaskEvent,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import { removeLabelled } from "../worker/docker/remove-labelled.js";
import { tempDir } from "./cleanup.js";
import {
  currentRevision,
  eventMs,
  isRunning,
  type SpecInit,
  spawnManager,
  spawnWorker,
  taskClient,
  type WorkerProcess,
  waitForWorkers,
  watchTasks,
} from "./cluster.js";
import { BENCH_CONTAINER_LABEL, BENCH_LABEL, type BenchContext } from "./context.js";
import { bareParallelStart, bareRun, containerPid } from "./docker-bare.js";
import type { ScenarioOutcome } from "./result.js";
import { median, medianOfRuns } from "./stats.js";

const IMAGE = "cube/httpd:local";
type RestartPolicyInit = MessageInitShape<typeof RestartPolicySchema>;
const BACKOFF_MS = 100;
const K = {
  rescheduled: "worker kill -9 → its tasks SCHEDULED elsewhere (ms)",
  moved: "worker kill -9 → its tasks RUNNING elsewhere (ms)",
  movedFirst: "worker kill -9 → first task RUNNING elsewhere (ms)",
  tasksMoved: "tasks on the killed worker",
  parallel: "the killed worker's share of containers started at once (ms)",
  dockerKill: "container `docker kill` → RUNNING again (ms)",
  crash: "container main process kill -9 → RUNNING again (ms)",
};

/** Runs the recovery scenario: 3 workers × 10 tasks (quick: 3 × 3). */
export async function recovery(ctx: BenchContext): Promise<ScenarioOutcome> {
  const perWorker = ctx.overrides["recovery-tasks"] ?? (ctx.quick ? 3 : 10);
  const cubeRuns: Record<string, number>[] = [];
  const bareRuns: Record<string, number>[] = [];
  const allTimelines: Record<string, string[]>[] = [];
  for (let run = 1; run <= ctx.runs; run++) {
    const { figures: cube, timelines } = await oneRun(ctx, run, perWorker);
    allTimelines.push(timelines);
    const bare = {
      [K.crash]: await dockerRestartBaseline(ctx.docker, ctx.runId, run),
      [K.parallel]: await bareParallelStart(
        ctx.docker,
        `bare-parallel-${ctx.runId}-${run}`,
        cube[K.tasksMoved] ?? perWorker,
        {
          image: IMAGE,
          ports: [{ containerPort: 80 }],
          resources: { memoryBytes: 32n << 20n },
          labels: { [BENCH_LABEL]: ctx.runId },
        },
      ),
    };
    cubeRuns.push(cube);
    bareRuns.push(bare);
    ctx.progress(
      `run ${run}/${ctx.runs}: moved ${cube[K.tasksMoved]} tasks in ${cube[K.moved]} ms; ` +
        `container restart ${cube[K.dockerKill]} ms (docker kill), ${cube[K.crash]} ms (crash), Docker's own ${bare[K.crash]} ms`,
    );
  }
  return {
    name: "recovery",
    title: `3 worker processes × ${perWorker} tasks of ${IMAGE}: worker kill -9, container kill`,
    figures: medianOfRuns(cubeRuns),
    baseline: medianOfRuns(bareRuns),
    runs: ctx.runs,
    note:
      `manager with default timing (heartbeat 500 ms, timeout 2 s, down grace 1 s) and 3 worker processes; ${3 * perWorker} tasks spread by the fit scheduler. ` +
      "Worker kill: SIGKILL of one worker process → the last of its tasks RUNNING on another worker (WatchTasks, client clock). " +
      `Container kill: a task with restart policy always and back-off ${BACKOFF_MS} ms, killed by \`docker kill\` or by SIGKILL of its main process from the host → RUNNING at the next generation. ` +
      "Baselines: Docker's own `--restart always` on the same container body, main process SIGKILLed → Docker's \"start\" event (Docker ignores its restart policy after `docker kill`); " +
      "and bare dockerode create + start of as many containers as the killed worker had, all at once — the engine's share of moving them. " +
      "No same-run baseline for the worker kill: for reference, Swarm marks a node down after ~15 s, Nomad after 20–30 s.",
    goals: [
      { figure: K.moved, kind: "max", limit: 3000, text: "≤ 3000 ms" },
      {
        figure: K.dockerKill,
        kind: "max",
        limit: 1000 + BACKOFF_MS,
        text: `≤ 1000 ms + ${BACKOFF_MS} ms back-off`,
      },
      {
        figure: K.crash,
        kind: "max",
        limit: 1000 + BACKOFF_MS,
        text: `≤ 1000 ms + ${BACKOFF_MS} ms back-off`,
      },
    ],
    detail: {
      perRun: { cube: cubeRuns, bare: bareRuns },
      containerKillTimelines: allTimelines,
      tasksPerWorker: perWorker,
    },
  };
}

/** One task event as seen by the benchmark's watcher. */
interface Logged {
  readonly id: string;
  readonly state: string;
  readonly generation: bigint;
  readonly workerId: string;
  /** Manager's event time, ms. */
  readonly time: number;
  readonly message: string;
}

/** Resolves when `predicate` has held for an event; rejects after `timeoutMs`. */
type Waiter = { predicate: (e: TaskEvent) => boolean; resolve: (at: number) => void };

async function oneRun(
  ctx: BenchContext,
  run: number,
  perWorker: number,
): Promise<{ figures: Record<string, number>; timelines: Record<string, string[]> }> {
  const dir = await tempDir("recovery");
  const label = `${BENCH_CONTAINER_LABEL}=${ctx.runId}`;
  const manager = await spawnManager({ dataDir: join(dir.path, "manager") });
  const workers: WorkerProcess[] = [];
  const waiters = new Set<Waiter>();
  const client = taskClient(manager.address);
  const until = (predicate: (e: TaskEvent) => boolean, what: string, timeoutMs = 30_000) => {
    const promise = new Promise<number>((resolve, reject) => {
      const waiter: Waiter = {
        predicate,
        resolve: (at) => {
          clearTimeout(timer);
          resolve(at);
        },
      };
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      waiters.add(waiter);
    });
    // Awaited by the caller; a failure before that point must not leave it unhandled.
    promise.catch(() => undefined);
    return promise;
  };
  const placed = new Map<string, { workerId: string; generation: bigint }>();
  const log: Logged[] = [];
  let watch: ReturnType<typeof watchTasks> | undefined;
  try {
    for (let i = 0; i < 3; i++) {
      workers.push(
        await spawnWorker(manager.address, join(dir.path, `worker-${i}`), `recovery-worker-${i}`),
      );
    }
    await waitForWorkers(manager.address, 3, 20_000);
    watch = watchTasks(client, await currentRevision(client), (event, at) => {
      const task = event.task;
      if (task) {
        log.push({
          id: task.id,
          state: TaskState[task.state] ?? String(task.state),
          generation: task.generation,
          workerId: task.workerId,
          time: eventMs(event),
          message: event.message,
        });
      }
      if (task && isRunning(event))
        placed.set(task.id, { workerId: task.workerId, generation: task.generation });
      for (const w of [...waiters]) {
        if (w.predicate(event)) {
          waiters.delete(w);
          w.resolve(at);
        }
      }
    });
    const spec = (name: string, extra: { restartPolicy?: RestartPolicyInit } = {}): SpecInit => ({
      name,
      image: IMAGE,
      ports: [{ containerPort: 80 }],
      // A memory request (no cpu limit: a throttled container starts slowly), so the fit
      // scheduler spreads the tasks over the workers.
      resources: { memoryBytes: 32n << 20n },
      labels: { [BENCH_LABEL]: ctx.runId },
      ...extra,
    });

    // 1. Fill the workers, then kill one.
    const ids = Array.from({ length: 3 * perWorker }, (_, i) => `rec-${run}-${i}`);
    const allRunning = Promise.all(
      ids.map((id) => until((e) => isRunning(e) && e.task?.id === id, `${id} RUNNING`, 60_000)),
    );
    await Promise.all(ids.map((id) => client.runTask({ id, spec: spec(id) })));
    await allRunning;
    const counts = new Map<string, string[]>();
    for (const id of ids) {
      const at = placed.get(id);
      if (!at) throw new Error(`no placement seen for ${id}`);
      counts.set(at.workerId, [...(counts.get(at.workerId) ?? []), id]);
    }
    ctx.progress(
      `run ${run}: tasks per worker ${[...counts.values()].map((v) => v.length).join("/")}`,
    );
    const victim = workers.reduce((a, b) =>
      (counts.get(b.id)?.length ?? 0) > (counts.get(a.id)?.length ?? 0) ? b : a,
    );
    const victimTasks = counts.get(victim.id) ?? [];
    const moved = Promise.all(
      victimTasks.map((id) =>
        until(
          (e) => isRunning(e) && e.task?.id === id && e.task.workerId !== victim.id,
          `${id} RUNNING elsewhere`,
        ),
      ),
    );
    const killedAt = Date.now();
    await victim.kill();
    const times = (await moved).map((at) => at - killedAt);
    // When the manager placed them elsewhere (its clock; same machine): the detection part.
    const rescheduled = victimTasks.map((id) => {
      const e = log.find(
        (l) =>
          l.id === id && l.state === "SCHEDULED" && l.workerId !== victim.id && l.time >= killedAt,
      );
      return e ? e.time - killedAt : Number.NaN;
    });
    // Its containers live on (nobody stops them): remove them now.
    await removeLabelled(ctx.docker, `cube.worker=${victim.id}`);

    // Let the engine settle (the moved tasks' starts, the removals) before timing again.
    await new Promise((r) => setTimeout(r, 1000));

    // 2. Kill a task's container from outside, twice over: docker kill, then a crash.
    const restartAfter = async (id: string, how: "docker-kill" | "crash") => {
      const running = until((e) => isRunning(e) && e.task?.id === id, `${id} RUNNING`);
      await client.runTask({
        id,
        spec: spec(id, {
          restartPolicy: {
            mode: RestartMode.ALWAYS,
            maxRestarts: 10,
            backoff: durationFromMs(BACKOFF_MS),
          },
        }),
      });
      await running;
      const { task } = await client.getTask({ id });
      if (!task?.containerId) throw new Error(`${id} is RUNNING without a container id`);
      const again = until(
        (e) => isRunning(e) && e.task?.id === id && e.task.generation > task.generation,
        `${id} RUNNING again`,
      );
      const t0 = Date.now();
      if (how === "docker-kill") await ctx.docker.getContainer(task.containerId).kill();
      else process.kill(await containerPid(ctx.docker, task.containerId), "SIGKILL");
      const ms = (await again) - t0;
      timelines[how] = log
        .filter((l) => l.id === id && l.time >= t0)
        .map(
          (l) =>
            `${l.state} g${l.generation} +${l.time - t0} ms${l.message ? ` (${l.message})` : ""}`,
        );
      return ms;
    };
    const timelines: Record<string, string[]> = {};
    const dockerKill = await restartAfter(`rec-${run}-kill`, "docker-kill");
    const crash = await restartAfter(`rec-${run}-crash`, "crash");
    ctx.progress(`run ${run}: docker kill timeline: ${timelines["docker-kill"]?.join(", ")}`);
    ctx.progress(`run ${run}: crash timeline: ${timelines.crash?.join(", ")}`);
    const figures = {
      [K.rescheduled]: Math.max(...rescheduled),
      [K.moved]: Math.max(...times),
      [K.movedFirst]: Math.min(...times),
      [K.tasksMoved]: victimTasks.length,
      [K.dockerKill]: dockerKill,
      [K.crash]: crash,
    };
    return { figures, timelines };
  } finally {
    watch?.stop();
    for (const w of workers) await w.kill();
    await manager.kill();
    for (const w of workers) await removeLabelled(ctx.docker, `cube.worker=${w.id}`);
    await removeLabelled(ctx.docker, label);
    await dir.remove();
  }
}

/**
 * Docker's own restart policy: a `--restart always` container whose main process is
 * SIGKILLed from the host; ms until Docker's "start" event for it. Median of 3 kills
 * of fresh containers (a container restarted again soon would meet Docker's doubling delay).
 */
async function dockerRestartBaseline(docker: Docker, runId: string, run: number): Promise<number> {
  const samples: number[] = [];
  for (let k = 0; k < 3; k++) {
    const name = `bare-restart-${runId}-${run}-${k}`;
    const c = await bareRun(
      docker,
      name,
      { name, image: IMAGE, ports: [{ containerPort: 80 }], labels: { [BENCH_LABEL]: runId } },
      { restartAlways: true },
    );
    try {
      const events = (await docker.getEvents({
        filters: { container: [c.id], event: ["start"] },
      })) as NodeJS.ReadableStream & { destroy(): void };
      const started = new Promise<number>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error("Docker did not restart the container within 30 s")),
          30_000,
        );
        events.on("data", () => {
          clearTimeout(timer);
          resolve(Date.now());
        });
      });
      const t0 = Date.now();
      process.kill(await containerPid(docker, c.id), "SIGKILL");
      samples.push((await started) - t0);
      events.destroy();
    } finally {
      await docker
        .getContainer(c.id)
        .remove({ force: true })
        .catch(() => undefined);
    }
  }
  return median(samples);
}
