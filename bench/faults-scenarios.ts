/**
 * The faults of issue 17, point 5, each injected into real processes on the real Docker
 * engine and timed by polling the manager (ListTasks, every 100 ms) and the engine
 * (running containers by cube.task label, of the cluster's workers only).
 */
import { loadavg } from "node:os";
import { join } from "node:path";
import type Docker from "dockerode";
import { RestartMode, type Task, TaskState } from "../gen/cube/v1/task_pb.js";
import { EngineStatus, WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { BENCH_LABEL } from "./context.js";
import { bareParallelStart } from "./docker-bare.js";
import { EngineSocket, FaultCluster, NetNs, type Proc, sleep, waitFor } from "./faults-kit.js";
import type { FaultFigure, FaultResult } from "./faults-report.js";

export const HTTP_IMAGE = "cube/httpd:local";

/** The manager's liveness defaults (README, `cube manager --help`): the goals are built on them. */
export const DEFAULTS = { heartbeatTimeoutMs: 2000, downGraceMs: 1000, startupGraceMs: 6000 };

export interface FaultContext {
  readonly quick: boolean;
  readonly docker: Docker;
  readonly runId: string;
  /** A temp folder for this scenario (data dirs, logs, sockets). */
  readonly dir: string;
  progress(message: string): void;
}

const ZERO = { max: 0, text: "0" };
const ms = (v: number | null, label: string, goal?: FaultFigure["goal"]): FaultFigure => ({
  label,
  value: v,
  unit: "ms",
  ...(goal ? { goal } : {}),
});
const count = (v: number | null, label: string, goal?: FaultFigure["goal"]): FaultFigure => ({
  label,
  value: v,
  unit: "",
  ...(goal ? { goal } : {}),
});

/** Runs one fault's steps; what fails ends that fault with its message, figures so far kept. */
async function fault(
  ctx: FaultContext,
  name: string,
  how: string,
  body: (figures: FaultFigure[]) => Promise<void>,
): Promise<FaultResult> {
  const figures: FaultFigure[] = [];
  const t0 = Date.now();
  ctx.progress(`${name}: starting`);
  try {
    await body(figures);
    ctx.progress(
      `${name}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${figures.map((f) => `${f.label} ${f.value}`).join("; ")}`,
    );
    return { name, how, figures };
  } catch (error) {
    const message = (error as Error).message.split("\n")[0] ?? String(error);
    ctx.progress(`${name}: FAILED: ${(error as Error).stack ?? message}`);
    return { name, how, figures, error: message };
  }
}

/** Submits `n` tasks `${prefix}-0…` (cpu 0.1 each, no ports), resolving with their ids. */
async function runTasks(
  c: FaultCluster,
  ctx: FaultContext,
  prefix: string,
  n: number,
  extra: Record<string, unknown> = {},
): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = `${prefix}-${i}`;
    await c.tasks.runTask({
      id,
      spec: {
        name: id,
        image: HTTP_IMAGE,
        resources: { cpu: 0.1 },
        labels: { [BENCH_LABEL]: ctx.runId },
        ...extra,
      },
    });
    ids.push(id);
  }
  return ids;
}

/** One look at the cluster: the tasks and their running containers. */
interface Look {
  readonly at: number;
  readonly tasks: Map<string, Task>;
  readonly containers: Map<string, string[]>;
}

async function look(c: FaultCluster, workerIds?: readonly string[]): Promise<Look> {
  const [tasks, containers] = await Promise.all([c.allTasks(), c.containers(workerIds)]);
  return { at: Date.now(), tasks: new Map(tasks.map((t) => [t.id, t])), containers };
}

/** Whether every id is RUNNING (and passes `also`) with exactly one running container. */
function healed(l: Look, ids: readonly string[], also: (t: Task) => boolean = () => true) {
  return ids.every((id) => {
    const t = l.tasks.get(id);
    return t?.state === TaskState.RUNNING && also(t) && (l.containers.get(id)?.length ?? 0) === 1;
  });
}

/**
 * Polls until {@link healed} (bounded by `ms`); never throws on time-out. Resolves with the
 * time it healed (null if not) and the last look.
 */
async function settle(
  c: FaultCluster,
  ids: readonly string[],
  ms: number,
  also?: (t: Task) => boolean,
  workerIds?: readonly string[],
): Promise<{ at: number | null; last: Look }> {
  const deadline = Date.now() + ms;
  let last: Look | undefined;
  for (;;) {
    try {
      last = await look(c, workerIds);
      if (healed(last, ids, also)) return { at: last.at, last };
    } catch {
      // the manager may be away (restarting, stopped): look again
    }
    if (Date.now() > deadline) {
      return {
        at: null,
        last: last ?? { at: Date.now(), tasks: new Map(), containers: new Map() },
      };
    }
    await sleep(100);
  }
}

const lostOf = (l: Look, ids: readonly string[]) =>
  ids.filter((id) => l.tasks.get(id)?.state !== TaskState.RUNNING).length;
const duplicatesOf = (l: Look, ids: readonly string[]) =>
  ids.filter((id) => (l.containers.get(id)?.length ?? 0) > 1).length;
/** Tasks whose container at the end is not the one they had before (replaced, or gone). */
function replacedOf(before: Map<string, string[]>, after: Map<string, string[]>, ids: string[]) {
  return ids.filter((id) => {
    const was = before.get(id)?.[0];
    return was !== undefined && !(after.get(id) ?? []).includes(was);
  }).length;
}
function describe(l: Look, ids: readonly string[]): string {
  return ids
    .map((id) => {
      const t = l.tasks.get(id);
      return `${id} ${t ? TaskState[t.state] : "missing"} x${l.containers.get(id)?.length ?? 0}`;
    })
    .join(", ");
}

/**
 * Follows a move through the manager's event stream (WatchTasks), opened before the fault:
 * when a task of `ids` was first UNKNOWN, when all were placed on `others` (any state), when
 * all were RUNNING there — each the moment the event reached this client, which is when a user
 * watching has the answer. Nothing polls the engine meanwhile: a `docker ps` every 100 ms
 * competed with the very container starts being timed. One look at the end checks that each
 * task then has exactly one container on `others` (else the move does not count).
 */
class MoveWatch {
  seenAt: number | null = null;
  placedAt: number | null = null;
  movedAt: number | null = null;
  readonly #abort = new AbortController();
  readonly #latest = new Map<string, Task>();
  readonly #done: Promise<void>;
  #wake: () => void = () => {};

  constructor(
    readonly c: FaultCluster,
    readonly ids: readonly string[],
    readonly others: readonly string[],
    before: readonly Task[],
  ) {
    const wanted = new Set(ids);
    let afterRevision = 0n;
    for (const t of before) {
      if (t.revision > afterRevision) afterRevision = t.revision;
      if (wanted.has(t.id)) this.#latest.set(t.id, t);
    }
    this.#done = (async () => {
      try {
        const stream = c.tasks.watchTasks({ afterRevision }, { signal: this.#abort.signal });
        for await (const { event } of stream) {
          const t = event?.task;
          if (!t || !wanted.has(t.id)) continue;
          this.#latest.set(t.id, t);
          this.#note(Date.now(), t);
        }
      } catch {
        // aborted, or the manager went away: the figures stay as they are
      }
    })();
  }

  /** Opens a watch from the tasks as they are now, and gives it time to be up. */
  static async open(c: FaultCluster, ids: readonly string[], others: readonly string[]) {
    const w = new MoveWatch(c, ids, others, await c.allTasks());
    await sleep(200);
    return w;
  }

  #note(at: number, t: Task): void {
    const on = (x: Task | undefined) => x !== undefined && this.others.includes(x.workerId);
    if (this.seenAt === null && t.state === TaskState.UNKNOWN) this.seenAt = at;
    const all = this.ids.map((id) => this.#latest.get(id));
    if (this.placedAt === null && all.every(on)) this.placedAt = at;
    if (this.movedAt === null && all.every((x) => on(x) && x?.state === TaskState.RUNNING)) {
      this.movedAt = at;
      this.#wake();
    }
  }

  /**
   * Waits until `until` (or, with `stopWhenMoved`, until all RUNNING on `others`), then looks
   * once at the tasks and the containers on `others`.
   */
  async until(
    until: number,
    stopWhenMoved: boolean,
  ): Promise<{
    seenAt: number | null;
    placedAt: number | null;
    movedAt: number | null;
    last: Look | null;
  }> {
    const left = until - Date.now();
    if (left > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          if (!stopWhenMoved) return;
          clearTimeout(timer);
          resolve();
        };
        if (stopWhenMoved && this.movedAt !== null) this.#wake();
      });
    }
    const last = await look(this.c, this.others).catch(() => null);
    this.#abort.abort();
    await this.#done;
    const onOthers = (t: Task) => this.others.includes(t.workerId);
    const movedAt = last && healed(last, this.ids, onOthers) ? this.movedAt : null;
    return { seenAt: this.seenAt, placedAt: this.placedAt, movedAt, last };
  }
}

/**
 * How many of `ids` run, on `workerIds`, in a container that joined a warm network sandbox
 * (worker/docker/sandbox-pool.ts) rather than getting its own network at its start.
 */
async function inSandbox(
  c: FaultCluster,
  ids: readonly string[],
  workerIds: readonly string[],
): Promise<number> {
  const wanted = new Set(ids);
  let n = 0;
  for (const id of workerIds) {
    const list = await c.docker.listContainers({ filters: { label: [`cube.worker=${id}`] } });
    for (const container of list) {
      const joined = container.HostConfig?.NetworkMode?.startsWith("container:") === true;
      if (joined && wanted.has(container.Labels["cube.task"] ?? "")) n++;
    }
  }
  return n;
}

/** Why a move took longer than its goal, when the placement itself came in time. */
async function slowStart(
  ctx: FaultContext,
  placedMs: number,
  startMs: number,
  n: number,
): Promise<string> {
  // The engine alone, given the same containers as the move (runTasks' spec) all at once.
  const engineMs = await bareParallelStart(ctx.docker, `bare-fault-${ctx.runId}-${Date.now()}`, n, {
    image: HTTP_IMAGE,
    resources: { cpu: 0.1 },
    labels: { [BENCH_LABEL]: ctx.runId },
  });
  return `placed elsewhere after ${placedMs} ms (the manager's part: detection + down grace, as designed); the other ${startMs} ms are the ${n} new containers' create and start: the engine alone, given ${n} at once right after, each with its own network (no warm sandbox), took ${engineMs} ms (load average ${loadavg()[0]?.toFixed(1)} on 2 cores)`;
}

/** The worker (of `procs`) holding most of `ids`. */
function holder(l: Look, ids: readonly string[], procs: readonly Proc[]): Proc {
  const n = (p: Proc) => ids.filter((id) => l.tasks.get(id)?.workerId === p.id).length;
  return [...procs].sort((a, b) => n(b) - n(a))[0] as Proc;
}

/**
 * Worker faults on one manager with workers wa (and wb): kill -9 and back in 2 s, alone
 * and with a second worker; kill -9 for good; SIGTERM and back; then the manager's
 * SIGSTOP.
 */
export async function workerFaults(ctx: FaultContext): Promise<FaultResult[]> {
  const n = ctx.quick ? 3 : 6;
  const restartAfter = 2000;
  const c = new FaultCluster(join(ctx.dir, "workers"), ctx.docker);
  const out: FaultResult[] = [];
  try {
    await c.startManager();
    await c.startWorker("wa");
    await c.readyWorkers(1);
    const ids = await runTasks(c, ctx, "wk", n);
    const first = await settle(c, ids, 60_000);
    if (first.at === null) throw new Error(`tasks did not start: ${describe(first.last, ids)}`);

    const killAndBack = async (figures: FaultFigure[], why?: string) => {
      const a = c.workers.get("wa") as Proc;
      const before = await c.containers();
      await a.kill9();
      const t0 = Date.now();
      await sleep(restartAfter);
      await c.startWorker("wa");
      const { at, last } = await settle(c, ids, 30_000);
      await sleep(1000);
      const end = await look(c);
      figures.push(
        ms(at && at - t0, "kill → all RUNNING again, one copy each"),
        count(replacedOf(before, end.containers, ids), `containers replaced (of ${n})`, ZERO),
        count(lostOf(end, ids), "tasks lost", ZERO),
        count(duplicatesOf(end, ids), "duplicate containers left", ZERO),
      );
      const replaced = figures[1];
      if (why && replaced && (replaced.value ?? 0) > 0) figures[1] = { ...replaced, why };
      if (at === null) throw new Error(`not healed: ${describe(last, ids)}`);
    };

    out.push(
      await fault(
        ctx,
        "worker kill -9, back in 2 s (alone)",
        `${n} tasks on the only worker; kill -9 of its agent, started again ${restartAfter} ms later (its containers keep running); replaced = containers of the tasks that are not the ones before`,
        (f) => killAndBack(f),
      ),
    );

    await c.startWorker("wb");
    await c.readyWorkers(2);
    out.push(
      await fault(
        ctx,
        "worker kill -9, back in 2 s (2nd worker fits)",
        `the same with a second worker that fits the ${n} tasks: the down grace (${DEFAULTS.downGraceMs} ms) ends before the agent is back, so replacements start; on its return the restarted agent's containers are kept and the replacements stopped`,
        (f) =>
          killAndBack(
            f,
            `the restarted agent's copies should have been kept over the replacements started after the ${DEFAULTS.downGraceMs} ms down grace (it registers with a new agent_started_at within the restart grace)`,
          ),
      ),
    );

    out.push(
      await fault(
        ctx,
        "worker kill -9 (for good)",
        `two workers; the agent holding most of the ${n} tasks is killed (-9) and not started again: time until every task runs on the other worker (its old containers, still running on the engine, are not counted)`,
        async (f) => {
          const now = await look(c);
          const both = [c.workers.get("wa"), c.workers.get("wb")] as Proc[];
          const victim = holder(now, ids, both);
          const other = both.find((p) => p !== victim) as Proc;
          const moved = ids.filter((id) => now.tasks.get(id)?.workerId === victim.id).length;
          const watch = await MoveWatch.open(c, ids, [other.id]);
          await victim.kill9();
          const t0 = Date.now();
          const { placedAt, movedAt } = await watch.until(t0 + 30_000, true);
          const last = await look(c, [other.id]);
          const at = movedAt;
          const goal = { max: 3000, text: "≤ 3,000 ms" };
          f.push(
            count(moved, "tasks on the killed worker"),
            ms(placedAt && placedAt - t0, "kill → all placed on the other worker"),
            {
              ...ms(at && at - t0, "kill → all RUNNING on the other worker", goal),
              ...(at !== null && placedAt !== null && at - t0 > goal.max
                ? { why: await slowStart(ctx, placedAt - t0, at - placedAt, moved) }
                : {}),
            },
            count(lostOf(last, ids), "tasks lost", ZERO),
            count(await inSandbox(c, ids, [other.id]), "of them started in a warm network sandbox"),
          );
          if (at === null) throw new Error(`not moved: ${describe(last, ids)}`);
          // Back for the next fault: its old copies are stopped on return.
          await c.startWorker(victim.name);
          await c.readyWorkers(2);
          const back = await settle(c, ids, 30_000);
          f.push(
            count(
              back.at === null ? duplicatesOf(back.last, ids) : 0,
              "duplicates left after it returns",
              ZERO,
            ),
          );
        },
      ),
    );

    out.push(
      await fault(
        ctx,
        "worker SIGTERM, back in 2 s",
        `two workers; the agent holding the ${n} tasks gets SIGTERM (it says it is restarting), is started again ${restartAfter} ms after it exited`,
        async (f) => {
          const now = await look(c);
          const both = [c.workers.get("wa"), c.workers.get("wb")] as Proc[];
          const victim = holder(now, ids, both);
          const before = now.containers;
          const t0 = Date.now();
          victim.signal("SIGTERM");
          const exit = await victim.exited;
          if (exit.code !== 0) throw new Error(`SIGTERM: exit ${exit.code ?? exit.signal}`);
          const exitMs = Date.now() - t0;
          await sleep(restartAfter);
          await c.startWorker(victim.name);
          const { at, last } = await settle(c, ids, 30_000);
          await sleep(1000);
          const end = await look(c);
          f.push(
            ms(exitMs, "SIGTERM → agent exited"),
            ms(at && at - t0, "SIGTERM → all RUNNING again, one copy each"),
            count(replacedOf(before, end.containers, ids), `containers replaced (of ${n})`, ZERO),
            count(lostOf(end, ids), "tasks lost", ZERO),
            count(duplicatesOf(end, ids), "duplicate containers left", ZERO),
          );
          if (at === null) throw new Error(`not healed: ${describe(last, ids)}`);
        },
      ),
    );

    const stopMs = ctx.quick ? 6000 : 10_000;
    out.push(
      await fault(
        ctx,
        `manager SIGSTOP ${stopMs / 1000} s`,
        `two workers running ${n} tasks; the manager is frozen (SIGSTOP) ${stopMs} ms, then SIGCONT; looked at again ${DEFAULTS.startupGraceMs + 2000} ms after (past the start-up grace, when anything it would replace has been)`,
        async (f) => {
          const before = await c.containers();
          const m = c.manager as Proc;
          m.signal("SIGSTOP");
          await sleep(stopMs);
          m.signal("SIGCONT");
          const t0 = Date.now();
          const readyAt = await waitFor("workers READY", 30_000, async () => {
            const { workers } = await c.workersApi.listWorkers({});
            return workers.filter((w) => w.status === WorkerStatus.READY).length >= 2;
          });
          await sleep(DEFAULTS.startupGraceMs + 2000 - (Date.now() - t0));
          const { at, last } = await settle(c, ids, 20_000);
          f.push(
            ms(readyAt - t0, "SIGCONT → both workers READY"),
            count(replacedOf(before, last.containers, ids), `containers replaced (of ${n})`, ZERO),
            count(lostOf(last, ids), "tasks lost", ZERO),
            count(duplicatesOf(last, ids), "duplicate containers left", ZERO),
          );
          if (at === null) throw new Error(`not healed: ${describe(last, ids)}`);
        },
      ),
    );
    return out;
  } finally {
    await c.stop();
  }
}

/**
 * The engine goes away and comes back: the worker reaches Docker through a unix socket in
 * front of the real engine, which the suite cuts (open connections broken, socket gone)
 * and restores. The machine's dockerd is left alone (other work on the machine uses it);
 * while "down", restart-always containers are killed, as a dockerd restart kills them.
 */
export async function engineFault(ctx: FaultContext): Promise<FaultResult> {
  const n = ctx.quick ? 2 : 4;
  const downMs = ctx.quick ? 3000 : 4000;
  const dir = join(ctx.dir, "engine");
  const c = new FaultCluster(dir, ctx.docker);
  const engine = new EngineSocket(join(ctx.dir, "docker.sock"));
  try {
    return await fault(
      ctx,
      "dockerd away and back",
      `one worker reaching Docker through a socket proxy the suite cuts for ${downMs} ms (open connections broken, socket removed; the real dockerd stays up for the machine's other users); ${n} restart-always tasks (back-off 2 s): half killed just before the cut, half while it is cut`,
      async (f) => {
        await engine.up();
        await c.startManager();
        const w = await c.startWorker("we", { CUBE_DOCKER_HOST: `unix://${engine.path}` });
        await c.readyWorkers(1);
        const ids = await runTasks(c, ctx, "en", n, {
          restartPolicy: {
            mode: RestartMode.ALWAYS,
            maxRestarts: 10,
            backoff: { seconds: 2n, nanos: 0 },
          },
        });
        const first = await settle(c, ids, 60_000);
        if (first.at === null) throw new Error(`tasks did not start: ${describe(first.last, ids)}`);
        const gen = new Map(ids.map((id) => [id, first.last.tasks.get(id)?.generation ?? 0n]));
        const half = Math.ceil(n / 2);
        for (const id of ids.slice(0, half)) {
          await ctx.docker.getContainer(first.last.tasks.get(id)?.containerId ?? "").kill();
        }
        await engine.down();
        const downAt = Date.now();
        for (const id of ids.slice(half)) {
          await ctx.docker.getContainer(first.last.tasks.get(id)?.containerId ?? "").kill();
        }
        const seenAt = await waitFor("engine DOWN on the node", 10_000, async () => {
          const { worker } = await c.workersApi.getWorker({ id: w.id });
          return worker?.engine?.status === EngineStatus.DOWN;
        }).catch(() => null);
        await sleep(Math.max(0, downMs - (Date.now() - downAt)));
        await engine.up();
        const t0 = Date.now();
        const { at, last } = await settle(
          c,
          ids,
          30_000,
          (t) => t.generation > (gen.get(t.id) ?? 0n),
        );
        f.push(
          ms(seenAt && seenAt - downAt, "cut → node says engine DOWN"),
          ms(at && at - t0, "engine back → every restart-always task RUNNING", {
            max: 5000,
            text: "≤ 5,000 ms",
          }),
          count(at === null ? lostOf(last, ids) : 0, "tasks stuck (not RUNNING after 30 s)", ZERO),
          count(duplicatesOf(last, ids), "duplicate containers", ZERO),
        );
        if (at === null) throw new Error(`not healed: ${describe(last, ids)}`);
      },
    );
  } finally {
    await c.stop();
    await engine.down();
  }
}

/**
 * The manager killed (-9) while `n` RunTask calls are in flight (all sent at once over 10
 * connections, each with its own id as idempotency key), once a quarter are answered.
 * After its restart on the same data: every acknowledged id must exist; the calls that got
 * no answer are sent again with the same ids (what a client does); no id may be stored
 * twice, and no task may run in two containers.
 */
export async function managerKillFault(ctx: FaultContext): Promise<FaultResult> {
  const n = ctx.quick ? 200 : 1000;
  const c = new FaultCluster(join(ctx.dir, "manager-kill"), ctx.docker);
  try {
    return await fault(
      ctx,
      `manager kill -9, ${n} RunTask in flight`,
      `${n} RunTask calls sent at once over 10 connections to a manager with one worker (cpu 0.5 each: the first few run, the rest wait PENDING); kill -9 sent from the ${Math.max(1, n / 10)}th answer; restart on the same data; every acknowledged id looked up; the unanswered calls sent again with the same ids; containers per task counted after the start-up grace`,
      async (f) => {
        await c.startManager();
        await c.startWorker("wm");
        await c.readyWorkers(1);
        const clients = Array.from({ length: 10 }, () => c.freshTasks());
        const spec = (id: string) => ({
          name: id,
          image: HTTP_IMAGE,
          resources: { cpu: 0.5 },
          labels: { [BENCH_LABEL]: ctx.runId },
        });
        const ids = Array.from({ length: n }, (_, i) => `mk-${i}`);
        const acked = new Set<string>();
        let failedCalls = 0;
        // The kill goes out from the answer that reaches the threshold, not from a poll: the
        // rest of the calls are still in flight when it lands.
        const threshold = Math.max(1, n / 10);
        const manager = c.manager as Proc;
        let killedAt = 0;
        let ackedAtKill = 0;
        const killNow = () => {
          if (killedAt) return;
          manager.signal("SIGKILL");
          killedAt = Date.now();
          ackedAtKill = acked.size;
        };
        const calls = ids.map((id, i) =>
          (clients[i % clients.length] as (typeof clients)[number])
            .runTask({ id, spec: spec(id) }, { timeoutMs: 30_000 })
            .then(
              () => {
                acked.add(id);
                if (acked.size >= threshold) killNow();
              },
              () => {
                failedCalls++;
              },
            ),
        );
        await waitFor(`${threshold} acknowledged`, 30_000, () => killedAt > 0, 5);
        await manager.exited;
        await Promise.all(calls);
        const unanswered = n - acked.size;
        const ackedLate = acked.size - ackedAtKill;
        if (failedCalls !== unanswered)
          ctx.progress(`${failedCalls} calls failed, ${unanswered} unanswered`);
        await c.startManager();
        const backAt = await waitFor("ListTasks answers", 30_000, async () => {
          await c.tasks.listTasks({ pageSize: 1 }, { timeoutMs: 2000 });
          return true;
        });
        const stored = new Set((await c.allTasks()).map((t) => t.id));
        const lost = [...acked].filter((id) => !stored.has(id));
        // A client sends again what got no answer, with the same ids.
        const retry = ids.filter((id) => !acked.has(id));
        for (let i = 0; i < retry.length; i += 50) {
          await Promise.all(
            retry.slice(i, i + 50).map((id) => c.tasks.runTask({ id, spec: spec(id) })),
          );
        }
        const all = await c.allTasks();
        const mine = all.filter((t) => t.id.startsWith("mk-"));
        const duplicateIds = mine.length - new Set(mine.map((t) => t.id)).size;
        // Past the start-up grace the restarted manager gives its worker, then a few looks.
        await sleep(Math.max(0, DEFAULTS.startupGraceMs + 1000 - (Date.now() - backAt)));
        let duplicateContainers = 0;
        let running = 0;
        for (let i = 0; i < 10; i++) {
          const l = await look(c);
          duplicateContainers = Math.max(duplicateContainers, duplicatesOf(l, ids));
          running = [...l.containers.values()].reduce((s, v) => s + v.length, 0);
          await sleep(200);
        }
        f.push(
          count(ackedAtKill, "answered when the kill was sent"),
          count(acked.size, "acknowledged in all (answers already on the way count)"),
          count(unanswered, "calls in flight at the kill (never answered)"),
          ms(backAt - killedAt, "kill → restarted manager answers (incl. spawn)"),
          count(lost.length, "acknowledged tasks lost", ZERO),
          count(
            duplicateIds + duplicateContainers,
            "duplicates (ids stored twice, tasks in 2 containers)",
            ZERO,
          ),
          count(mine.length, `tasks stored after the retries (of ${n})`),
        );
        ctx.progress(
          `manager kill: ${ackedLate} answers arrived after the kill was sent; ${running} containers running`,
        );
        if (lost.length > 0) ctx.progress(`lost: ${lost.slice(0, 20).join(", ")}`);
      },
    );
  } finally {
    await c.stop();
  }
}

/**
 * A worker cut off: `wp` holds the tasks, two more workers fit them. First a network
 * partition (wp in a network namespace of the suite's, its veth link down for `cutMs`,
 * then up), then the holder frozen with SIGSTOP instead (SIGCONT after `cutMs`). Without
 * `ip netns`, everything runs on loopback and only the freeze is measured.
 */
export async function partitionFaults(ctx: FaultContext): Promise<FaultResult[]> {
  const n = ctx.quick ? 2 : 4;
  const cutMs = ctx.quick ? 6000 : 10_000;
  const noNetns = await NetNs.available();
  const ns = noNetns ? undefined : new NetNs();
  const c = new FaultCluster(join(ctx.dir, "partition"), ctx.docker, ns ? NetNs.HOST : "127.0.0.1");
  const out: FaultResult[] = [];
  const goalMoved = DEFAULTS.heartbeatTimeoutMs + DEFAULTS.downGraceMs + 1000;
  try {
    if (ns) await ns.create();
    await c.startManager();
    const wp = await c.startWorker("wp", {}, ns?.name);
    await c.readyWorkers(1);
    const ids = await runTasks(c, ctx, "pt", n);
    const first = await settle(c, ids, 60_000);
    if (first.at === null) throw new Error(`tasks did not start: ${describe(first.last, ids)}`);
    await c.startWorker("wa");
    await c.readyWorkers(2);
    await c.startWorker("wb");
    await c.readyWorkers(3);

    const isolate = async (
      f: FaultFigure[],
      ids: readonly string[],
      victim: Proc,
      cut: () => Promise<void>,
      mend: () => Promise<void>,
      words: { cut: string; mend: string },
    ) => {
      const others = [...c.workers.values()].filter((p) => p !== victim).map((p) => p.id);
      const watch = await MoveWatch.open(c, ids, others);
      await cut();
      const t0 = Date.now();
      const during = await watch.until(t0 + cutMs, false);
      const { seenAt, placedAt, movedAt } = during;
      const sandboxed = await inSandbox(c, ids, others);
      await mend();
      const t1 = Date.now();
      const back = waitFor("the worker READY again", 30_000, async () => {
        const { worker } = await c.workersApi.getWorker({ id: victim.id });
        return worker?.status === WorkerStatus.READY;
      }).catch(() => null);
      const { at, last } = await settle(c, ids, 30_000);
      const readyAt = await back;
      await sleep(1000);
      const end = await look(c);
      const movedGoal = {
        max: goalMoved,
        text: `≤ ${goalMoved.toLocaleString("en-US")} ms (hb timeout + down grace + 1 s)`,
      };
      let movedWhy: string | undefined;
      if (movedAt === null) {
        movedWhy = `not all RUNNING on the other two within the ${cutMs} ms cut; at its end (containers on the other two only): ${during.last ? describe(during.last, ids) : "no answer"}`;
      } else if (placedAt !== null && movedAt - t0 > goalMoved) {
        movedWhy = await slowStart(ctx, placedAt - t0, movedAt - placedAt, ids.length);
      }
      const dupGoal = { max: 2000, text: "≤ 2,000 ms" };
      let dupWhy: string | undefined;
      if (at !== null && at - t1 > dupGoal.max && readyAt !== null) {
        dupWhy =
          readyAt - t1 > dupGoal.max / 2
            ? `the worker was READY again only ${readyAt - t1} ms after the ${words.mend}: its reconnect back-off (100 ms doubling to 1 s, jittered) climbs while the dials fail during the cut, so the next dial comes up to 1 s after the link returns; the copies were reconciled ${at - readyAt} ms after that`
            : `the worker was READY again ${readyAt - t1} ms after the ${words.mend}; the copies were reconciled ${at - readyAt} ms after that`;
      }
      f.push(
        ms(seenAt && seenAt - t0, `${words.cut} → its tasks UNKNOWN`),
        ms(placedAt && placedAt - t0, `${words.cut} → all placed on the other two`),
        {
          ...ms(movedAt && movedAt - t0, `${words.cut} → all RUNNING on the other two`, movedGoal),
          ...(movedWhy ? { why: movedWhy } : {}),
        },
        count(sandboxed, "of them started in a warm network sandbox"),
        ms(readyAt && readyAt - t1, `${words.mend} → the worker READY again`),
        {
          ...ms(at && at - t1, `${words.mend} → duplicates stopped (one copy each)`, dupGoal),
          ...(dupWhy ? { why: dupWhy } : {}),
        },
        count(lostOf(end, ids), "tasks lost", ZERO),
        count(duplicatesOf(end, ids), "duplicate containers left", ZERO),
      );
      if (at === null) throw new Error(`not healed: ${describe(last, ids)}`);
    };

    if (ns) {
      out.push(
        await fault(
          ctx,
          `partition ${cutMs / 1000} s (netns)`,
          `worker wp runs in network namespace ${ns.name} (veth ${NetNs.INSIDE}/30 ↔ ${NetNs.HOST}, where the manager listens, and wp, wa and wb on the host dial it, with CUBE_INSECURE=1) holding ${n} tasks; wp's link set down for ${cutMs} ms, then up; its containers keep running on the engine meanwhile`,
          (f) =>
            isolate(
              f,
              ids,
              wp,
              () => ns.down(),
              () => ns.up(),
              {
                cut: "link down",
                mend: "link up",
              },
            ),
        ),
      );
    } else {
      out.push({
        name: "partition (netns)",
        how: "needs ip netns as root",
        figures: [],
        error: `skipped: ${noNetns}`,
        skipped: true,
      });
    }

    // After the partition the tasks are spread over wa and wb. For the same fault as the
    // partition (one worker holding all n), the other two are cordoned while n fresh tasks
    // are placed, so they all land on wp, then uncordoned so they can take them.
    const others = ["wa", "wb"];
    for (const name of others) await c.nodes.cordonNode({ name });
    const frozenIds = await runTasks(c, ctx, "ps", n);
    const placed = await settle(c, frozenIds, 60_000);
    if (placed.at === null)
      throw new Error(`tasks did not start: ${describe(placed.last, frozenIds)}`);
    for (const name of others) await c.nodes.uncordonNode({ name });
    out.push(
      await fault(
        ctx,
        `worker SIGSTOP ${cutMs / 1000} s`,
        `worker wp, holding ${n} fresh tasks (placed while wa and wb were cordoned, which were then uncordoned; the partition's ${n} run on wa and wb meanwhile), is frozen (SIGSTOP) for ${cutMs} ms instead, then SIGCONT: a hung host rather than a cut link`,
        (f) =>
          isolate(
            f,
            frozenIds,
            wp,
            async () => wp.signal("SIGSTOP"),
            async () => wp.signal("SIGCONT"),
            { cut: "SIGSTOP", mend: "SIGCONT" },
          ),
      ),
    );
    return out;
  } finally {
    await c.stop();
    await ns?.remove();
  }
}
