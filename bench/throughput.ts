/**
 * Throughput: W hollow workers (the real worker code with the hollow driver, spread over
 * a few child processes, each worker on its own gRPC stream to the manager) and N tasks,
 * measured twice per run, each on a fresh cluster:
 *  - "gRPC": the real manager process (manager/main.ts), tasks submitted by RunTasks in
 *    batches (a few calls in flight) through the cube CLI's own client (cli/client.ts, as
 *    `cube run --count` sends them) — what a user gets. The headline counts a task placed
 *    when its RunTasks answer (stored, synced) has reached the client. Its same-run
 *    baseline is the same cluster fed by RunTask, one call per task (many in flight): what
 *    batching buys.
 *  - "in-process baseline": the same manager parts (bench/manager-host.ts), the same
 *    batches handed to the function the RunTasks handler calls, so placements are measured
 *    without client and transport: a baseline, not what a user gets. Its own baseline is the
 *    control plane alone (no workers).
 * The manager and the hollow workers run with the product's log level and metrics interval;
 * what differs from the product as shipped (heartbeat timing, the hollow workers' nature) is
 * printed next to each figure. The manager runs in its own process, so /proc gives its peak
 * RSS and CPU. Decision and RUNNING times come afterwards from the manager's event log
 * (WatchTasks replayed from the revision before the first submit): no live watcher loads
 * the manager during the run. Flags (besides the sizes): --modes=grpc,in-process, and
 * --client=cube (default: the CLI's transport) or wide-window (the bench's wide-window
 * client, printed as a difference next to the figures).
 */
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { create, toJson } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { CALL_TIMEOUT_MS, connectManager } from "../cli/client.js";
import { TaskEventType, TaskSpecSchema, TaskState } from "../gen/cube/v1/task_pb.js";
import { type TaskService, TaskView } from "../gen/cube/v1/task_service_pb.js";
import { type Child, spawnChild } from "./children.js";
import { tempDir } from "./cleanup.js";
import {
  adminTokenOf,
  currentRevision,
  eventMs,
  joinTokenOf,
  spawnManager,
  taskClient,
  waitForWorkers,
  watchTasks,
} from "./cluster.js";
import { BENCH_LABEL, type BenchContext } from "./context.js";
import { runPool } from "./pool.js";
import { machineCpu, procStats } from "./proc-stats.js";
import { type Frame, readProfile, topFrames } from "./profile-top.js";
import type { ScenarioOutcome } from "./result.js";
import { medianOfRuns, percentile } from "./stats.js";

type Mode = "grpc" | "in-process";
const MODES: readonly Mode[] = ["grpc", "in-process"];
const SUFFIX: Record<Mode, string> = {
  grpc: "RunTasks over gRPC",
  "in-process": "in-process baseline, no gRPC",
};
const key = (mode: Mode, what: string) => `${what} — ${SUFFIX[mode]}`;
/** Figure names (before their mode's suffix). */
const F = {
  /** The headline: counted when the RunTasks answer (durable) is in the client's hands. */
  placements: "placements/s (answered, durable)",
  /** Counted at the manager's decision (last SCHEDULED event): the old headline, secondary. */
  decisions: "placement decisions/s (secondary)",
  running: "tasks RUNNING/s",
  unplaced: "tasks not placed in their answer",
};

/** The client the gRPC measurement submits with (--client=cube|wide-window). */
type ClientKind = "cube" | "wide-window";

function clientKind(ctx: BenchContext): ClientKind {
  const kind = ctx.flags.client ?? "cube";
  if (kind !== "cube" && kind !== "wide-window") {
    throw new Error(`--client=${kind}: cube (the CLI's transport, default) or wide-window`);
  }
  return kind;
}

/** A TaskService client for submits: the cube CLI's (one HTTP/2 connection each), or the bench's wide-window one. */
function submitClient(kind: ClientKind, address: string): Client<typeof TaskService> {
  return kind === "cube"
    ? connectManager(address, adminTokenOf(address)).tasks
    : taskClient(address);
}

interface Sizes {
  workers: number;
  /** Tasks of the in-process measurement. */
  tasks: number;
  /** Tasks of the RunTasks-over-gRPC measurement. */
  grpcTasks: number;
  /** Tasks of the one-RunTask-per-task baseline (fewer: one RPC each makes it slow). */
  singleTasks: number;
  /** Tasks per RunTasks call. */
  batch: number;
  /** RunTasks calls in flight. */
  inflight: number;
  hosts: number;
  concurrency: number;
  connections: number;
}

function sizes(ctx: BenchContext): Sizes {
  const o = ctx.overrides;
  const workers = o.workers ?? (ctx.quick ? 50 : 1000);
  return {
    workers,
    tasks: o.tasks ?? (ctx.quick ? 2000 : 100_000),
    grpcTasks: o["grpc-tasks"] ?? o.tasks ?? (ctx.quick ? 2000 : 100_000),
    singleTasks: o["single-tasks"] ?? (ctx.quick ? 300 : 5000),
    batch: o.batch ?? (ctx.quick ? 250 : 5000),
    inflight: o.inflight ?? 4,
    hosts: Math.max(1, Math.min(workers, o.hosts ?? (ctx.quick ? 1 : 4))),
    concurrency: o.concurrency ?? 256,
    connections: o.connections ?? 4,
  };
}

/** The manager's profile of one run, summarised for the report. */
interface ManagerProfile {
  readonly file: string;
  /** Self time over the whole measured window. */
  readonly top: Frame[];
  /** Seconds from the first submit to the last answer. */
  readonly placingS: number;
  /** Self time over the placing window. */
  readonly placingSelf: Frame[];
  /** Total time (self + callees) over the placing window. */
  readonly placingTotal: Frame[];
}

/** Runs the throughput scenario. */
export async function throughput(ctx: BenchContext): Promise<ScenarioOutcome> {
  const s = sizes(ctx);
  const runs: Record<string, number>[] = [];
  const baselines: Record<string, number>[] = [];
  const profiles: ManagerProfile[] = [];
  for (let run = 1; run <= ctx.runs; run++) {
    const figures: Record<string, number> = {};
    const baseline: Record<string, number> = {};
    const modes = ctx.flags.modes
      ? MODES.filter((m) => ctx.flags.modes?.split(",").includes(m))
      : MODES;
    for (const mode of modes) {
      const r = await oneRun(ctx, run, s, mode, profiles);
      Object.assign(figures, r.figures);
      Object.assign(baseline, r.baseline);
      const f = (what: string) => Math.round(r.figures[key(mode, what)] ?? Number.NaN);
      ctx.progress(
        `run ${run}/${ctx.runs} (${SUFFIX[mode]}): ${f(F.placements)} placements/s answered, ` +
          `${f(F.decisions)} decisions/s, ${f(F.running)} RUNNING/s, ` +
          `p50 ${f("submit → RUNNING p50 (ms)")} ms, manager ${f("manager peak RSS (MiB)")} MiB, ` +
          `${f("manager CPU (% of one core)")}% cpu`,
      );
    }
    if (modes.includes("in-process")) {
      baseline[key("in-process", F.placements)] = await controlPlaneRate(ctx, s);
    }
    runs.push(figures);
    baselines.push(baseline);
  }
  const figures = medianOfRuns(runs);
  const baseline = medianOfRuns(baselines);
  const client = clientKind(ctx);
  const unlike = unlikeShipped(ctx, s, client);
  const differences: Record<string, readonly string[]> = {};
  for (const k of [...Object.keys(figures), ...Object.keys(baseline)]) {
    differences[k] = k.endsWith(SUFFIX.grpc) ? unlike.grpc : unlike["in-process"];
  }
  return {
    name: "throughput",
    title: `${s.workers.toLocaleString("en-US")} hollow workers, ${s.tasks.toLocaleString("en-US")} tasks (${s.grpcTasks.toLocaleString("en-US")} over gRPC)`,
    figures,
    baseline,
    runs: ctx.runs,
    note:
      `${s.workers} hollow workers (real worker code — store, outbox, stream client, task runner, metrics — with the product's log level and metrics interval, and the hollow driver, which starts no container and makes up each one's usage sample) in ${s.hosts} child process(es) at nice ${NICE_HOLLOW} (they stand for other machines), ` +
      `each on its own gRPC stream to a manager process (product log level, data on disk, synced group commits); every process logs to a file; a fresh cluster for each measurement. ` +
      `"RunTasks over gRPC": manager/main.ts, ${s.grpcTasks} tasks in RunTasks calls of ${s.batch} (view BASIC), ${s.inflight} in flight over ${s.connections} HTTP/2 connections, through ${client === "cube" ? "the cube CLI's client (cli/client.ts, its transport), as `cube run --count` sends them" : "the bench's wide-window client (bench/cluster.ts), not the CLI's"}, without the CLI's ${CALL_TIMEOUT_MS / 1000} s deadline (the calls that took longer are counted); the client decodes every answer. Its baseline is the same cluster, just before, fed ${s.singleTasks} tasks by RunTask one call per task, ${s.concurrency} in flight through the same clients (rate = answers/s; every answer is a durable placement), and the manager's CPU per task then. ` +
      `"in-process baseline, no gRPC" (not what a user gets): ${s.tasks} tasks to the same manager parts (bench/manager-host.ts), handed to manager/rules/run-tasks.ts inside the process in the same batches; its own baseline is the same submit to a manager with no workers (tasks accepted and stored, left PENDING): the control plane and store alone. ` +
      `${F.placements} = tasks placed in their answers ÷ (arrival of the last answer at the client − first submit); an answer comes once its tasks, placements included, are stored with a synced write (in-process: the last runTasks call resolved). ` +
      `${F.decisions} = tasks ÷ (manager time of the last SCHEDULED event − first submit): counted at the scheduling decision, before it is durable or answered (the headline before issue 13). ` +
      `${F.running} = tasks ÷ (manager time of the last RUNNING event − first submit); latencies = manager event time of RUNNING − client submit time (one clock). ` +
      "Manager RSS = VmHWM, CPU = utime+stime over the run, from /proc; tasks placed more than once counts any move all the same.",
    differences,
    goals: [
      {
        figure: key("grpc", F.placements),
        kind: "min" as const,
        limit: 20_000,
        text: "≥ 20,000/s",
      },
    ],
    detail: { perRun: runs, baselines, sizes: s, client, profiles },
  };
}

/** What differs from the product as shipped, per mode: printed next to each figure. */
function unlikeShipped(
  ctx: BenchContext,
  s: Sizes,
  client: ClientKind,
): Record<Mode, readonly string[]> {
  const sec = (ms: string) => `${Number(ms) / 1000} s`;
  const common = [
    `heartbeat interval ${sec(TIMING.CUBE_HEARTBEAT_INTERVAL)}, heartbeat timeout ${sec(TIMING.CUBE_HEARTBEAT_TIMEOUT)}, down grace ${sec(TIMING.CUBE_DOWN_GRACE)} (defaults 0.5 s, 2 s, 1 s), as the README advises for an overloaded host: hollow workers sharing 2 busy cores with the manager miss the default heartbeats and have their tasks moved`,
    `the workers are ${s.workers} hollow ones (the worker's code and defaults, but a driver that starts no container; data on tmpfs; 64 cpu and 64 GiB declared each) in ${s.hosts} process${s.hosts === 1 ? "" : "es"} at nice ${NICE_HOLLOW} on the manager's machine: fakes standing in for other machines, whose own work (heartbeats, node sampling every 2 s) here takes the manager's cores ("hollow workers CPU idle")`,
  ];
  const profiled = ctx.profileDir
    ? [
        "V8 CPU profiler on, and the manager in bench/manager-host.ts (the same parts and routes) instead of manager/main.ts",
      ]
    : [];
  const wide =
    client === "wide-window"
      ? [
          "submitted through the bench's client with 4 MiB stream and 16 MiB connection HTTP/2 windows (the cube CLI's: 64 KiB)",
        ]
      : [];
  const noDeadline = `RunTasks calls without the cube CLI's ${CALL_TIMEOUT_MS / 1000} s deadline, so that a slow one is counted ("calls over the deadline": a \`cube run --count\` would have failed), not the end of the run`;
  return {
    grpc: [...wide, noDeadline, ...common, ...profiled],
    "in-process": [
      "a baseline, not what a user gets: tasks handed to runTasks inside the manager process (bench/manager-host.ts), no client, no gRPC",
      ...common,
      ...profiled,
    ],
  };
}

/**
 * Failure-detection timing for a saturated machine: with the defaults (interval 0.5 s,
 * timeout 2 s, grace 1 s) a thousand workers sharing two busy cores with the manager miss
 * heartbeats, are marked DOWN and their tasks moved mid-run — churn, not throughput — and
 * their heartbeats alone keep half a core busy. The manager's options recommend raising
 * them at scale (as Nomad stretches its heartbeat TTL with the node count); done here, the
 * workers' ping timeout following, and counted ("placed more than once").
 */
const TIMING = {
  CUBE_HEARTBEAT_INTERVAL: "2000",
  CUBE_HEARTBEAT_TIMEOUT: "10000",
  CUBE_DOWN_GRACE: "10000",
};

/** A manager for one measurement: the real process, or the host that can submit in-process. */
async function startManagerFor(
  ctx: BenchContext,
  mode: Mode,
  dataDir: string,
): Promise<Child & { address: string }> {
  // Profiled, both modes run in the manager host (the same parts and routes as the real
  // process), which can profile just the measured window.
  // Either way at the product's log level (CUBE_LOG_LEVEL unset: info).
  if (mode === "grpc" && !ctx.profileDir) {
    return spawnManager({ dataDir, env: { ...TIMING } });
  }
  const child = await spawnChild({
    name: "manager host",
    script: "bench/manager-host.ts",
    env: {
      CUBE_DATA_DIR: dataDir,
      CUBE_LISTEN: "127.0.0.1:0",
      ...TIMING,
    },
    stdin: true,
  });
  return Object.assign(child, { address: String(child.hello.listening) });
}

/**
 * Tasks/s the manager's control plane accepts and stores with no worker at all (they stay
 * PENDING): the same in-process submit, without placements and worker streams — what the
 * rest of the pipeline is measured against.
 */
async function controlPlaneRate(ctx: BenchContext, s: Sizes): Promise<number> {
  const dir = await tempDir("control-plane");
  const count = Math.min(s.tasks, ctx.quick ? 2000 : 20_000);
  try {
    const host = await startManagerFor(
      { ...ctx, profileDir: undefined },
      "in-process",
      join(dir.path, "m"),
    );
    try {
      host.send({
        submit: {
          prefix: "cp-",
          count,
          batch: s.batch,
          concurrency: s.inflight,
          spec: toJson(TaskSpecSchema, create(TaskSpecSchema, SPEC)),
          file: join(dir.path, "submitted.f64"),
        },
      });
      const answer = await host.nextLine();
      if (typeof answer?.ms !== "number")
        throw new Error(`manager host: ${JSON.stringify(answer)}`);
      // Every call resolved once its tasks were durable: counted at the last answer.
      return count / (answer.ms / 1000);
    } finally {
      await host.kill();
    }
  } finally {
    await dir.remove();
  }
}

/**
 * Tasks/s placed by RunTask, one call per task, `s.concurrency` in flight over the given
 * clients — the way before RunTasks — and the manager's CPU per task (µs), its idle load
 * (`idlePercent` of a core) taken out. Waits (polling through `reader`) until they all run,
 * so the measured batch run starts from a quiet cluster.
 */
async function singleCallRate(
  clients: Client<typeof TaskService>[],
  reader: Client<typeof TaskService>,
  pid: number,
  s: Sizes,
  prefix: string,
  spec: typeof SPEC & { labels: Record<string, string> },
  idlePercent: number,
): Promise<{ rate: number; cpuPerTask: number }> {
  const t0 = Date.now();
  const cpu0 = procStats(pid).cpuSeconds;
  await runPool(s.singleTasks, s.concurrency, (i) =>
    (clients[i % clients.length] as Client<typeof TaskService>).runTask({
      id: `${prefix}${i}`,
      spec,
    }),
  );
  const seconds = (Date.now() - t0) / 1000;
  const cpu = procStats(pid).cpuSeconds - cpu0 - (idlePercent / 100) * seconds;
  await untilAllRunning(reader, Math.max(60_000, s.singleTasks * 3));
  return { rate: s.singleTasks / seconds, cpuPerTask: (Math.max(0, cpu) / s.singleTasks) * 1e6 };
}

async function oneRun(
  ctx: BenchContext,
  run: number,
  s: Sizes,
  mode: Mode,
  profiles: ManagerProfile[],
): Promise<{ figures: Record<string, number>; baseline: Record<string, number> }> {
  const count = mode === "grpc" ? s.grpcTasks : s.tasks;
  const dir = await tempDir("throughput");
  const shm = await tempDir("hollow", "/dev/shm").catch(() => tempDir("hollow"));
  const hosts: Child[] = [];
  let manager: (Child & { address: string }) | undefined;
  try {
    const m = await startManagerFor(ctx, mode, join(dir.path, "manager"));
    manager = m;
    const t0 = Date.now();
    const perHost = Math.ceil(s.workers / s.hosts);
    const started = await Promise.all(
      Array.from({ length: s.hosts }, (_, h) =>
        spawnChild({
          name: `hollow host ${h}`,
          script: "bench/hollow-host.ts",
          // Hollow workers stand for other machines (kubemark runs its hollow nodes apart
          // from the control plane); niced, they leave the manager its core.
          nice: NICE_HOLLOW,
          env: {
            BENCH_MANAGER: m.address,
            BENCH_COUNT: String(Math.min(perHost, s.workers - h * perHost)),
            BENCH_DIR: join(shm.path, `h${h}`),
            BENCH_HOST: String(h),
            BENCH_PING_TIMEOUT: TIMING.CUBE_HEARTBEAT_TIMEOUT,
            // Each hollow worker joins with it, as a real one does.
            ...(joinTokenOf(m.address) ? { BENCH_TOKEN: joinTokenOf(m.address) as string } : {}),
          },
          // Profiled over the measured window only, through stdin (bench/window-profiler.ts).
          stdin: ctx.profileDir !== undefined,
          readyTimeoutMs: 300_000,
        }),
      ),
    );
    hosts.push(...started);
    await waitForWorkers(m.address, s.workers, 120_000);
    ctx.progress(
      `run ${run} (${SUFFIX[mode]}): ${s.workers} hollow workers READY in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );

    // Submits go through the user's client; the bench's own reads (polls, the event-log
    // replay, none of them timed) through a wide-window one.
    const kind = clientKind(ctx);
    const clients: Client<typeof TaskService>[] = Array.from({ length: s.connections }, () =>
      submitClient(kind, m.address),
    );
    const first = taskClient(m.address);
    const spec = { ...SPEC, labels: { [BENCH_LABEL]: ctx.runId } };
    // A warm-up round, unmeasured: JIT, connections, and a revision above 0 to replay from
    // (WatchTasks after revision 0 means "only new events").
    await runPool(WARM_UP, 64, (i) =>
      (clients[i % clients.length] as Client<typeof TaskService>).runTask({
        id: `tp-${run}-warm-${i}`,
        spec,
      }),
    );
    await untilAllRunning(first, 60_000);
    // What the connected workers cost the manager when nothing happens (heartbeats).
    const idleMs = ctx.quick ? 1000 : 3000;
    const hostsCpu = () => hosts.reduce((sum, h) => sum + procStats(h.pid).cpuSeconds, 0);
    const idle0 = procStats(m.pid).cpuSeconds;
    const hostsIdle0 = hostsCpu();
    await new Promise((r) => setTimeout(r, idleMs));
    const idlePercent = ((procStats(m.pid).cpuSeconds - idle0) / (idleMs / 1000)) * 100;
    // Heartbeats, and each hollow worker's node sampling and metrics (every 2 s): work that
    // other machines would do, here on the manager's.
    const hostsIdlePercent = ((hostsCpu() - hostsIdle0) / (idleMs / 1000)) * 100;
    const baseline: Record<string, number> = {};
    if (mode === "grpc") {
      const single = await singleCallRate(
        clients,
        first,
        m.pid,
        s,
        `tp-${run}-single-`,
        spec,
        idlePercent,
      );
      baseline[key(mode, F.placements)] = single.rate;
      baseline[key(mode, "manager CPU per task (µs)")] = single.cpuPerTask;
      ctx.progress(
        `run ${run} (${SUFFIX[mode]}): baseline, RunTask one call per task: ${Math.round(single.rate)} placements/s`,
      );
    }
    const fromRevision = await currentRevision(first);
    const prefix = `tp-${run}-`;
    const before = procStats(m.pid);
    const hostsBefore = hostsCpu();
    const machineBefore = machineCpu();
    const selfBefore = process.cpuUsage();
    if (mode === "in-process") {
      m.send({ loop: "reset" });
      await m.nextLine();
    }
    const profiling = ctx.profileDir !== undefined;
    if (profiling) {
      for (const child of [m, ...hosts]) child.send({ profile: "start" });
      for (const child of [m, ...hosts]) await child.nextLine();
    }
    const start = Date.now();
    let submitted: Float64Array;
    /** When the last answer (its tasks durable) reached the client, and how many it placed. */
    let answeredAt = 0;
    let placed = 0;
    /** How long each RunTasks call took, submit to answer decoded (ms). */
    const callMs: number[] = [];
    const tick = setInterval(
      () => ctx.progress(`run ${run} (${SUFFIX[mode]}): submitting`),
      10_000,
    );
    try {
      if (mode === "grpc") {
        submitted = new Float64Array(count);
        const times = submitted;
        await runPool(Math.ceil(count / s.batch), s.inflight, async (b) => {
          const from = b * s.batch;
          const n = Math.min(s.batch, count - from);
          times.fill(Date.now(), from, from + n);
          // As `cube run --count` sends them: ids and states come back, not the specs sent.
          const requests = Array.from({ length: n }, (_, k) => ({
            id: `${prefix}${from + k}`,
            spec,
          }));
          const sent = Date.now();
          // No deadline (the CLI's is 15 s): a slower call is counted, not failed.
          const answer = await (clients[b % clients.length] as Client<typeof TaskService>).runTasks(
            { requests, view: TaskView.BASIC },
          );
          const now = Date.now();
          answeredAt = Math.max(answeredAt, now);
          callMs.push(now - sent);
          if (answer.tasks.length !== n) {
            throw new Error(`RunTasks of ${n} tasks answered ${answer.tasks.length}`);
          }
          for (const task of answer.tasks) if (task.workerId) placed++;
        });
      } else {
        const file = join(dir.path, "submitted.f64");
        m.send({
          submit: {
            prefix,
            count,
            batch: s.batch,
            concurrency: s.inflight,
            spec: toJson(TaskSpecSchema, create(TaskSpecSchema, spec)),
            file,
          },
        });
        const answer = await m.nextLine();
        if (!answer?.submitted || typeof answer.answeredAt !== "number")
          throw new Error(
            `manager host did not submit: ${JSON.stringify(answer)}\n${m.stderrTail()}`,
          );
        answeredAt = answer.answeredAt;
        placed = Number(answer.placed);
        const bytes = await readFile(file);
        submitted = new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
      }
    } finally {
      clearInterval(tick);
    }
    const doneAt = await untilAllRunning(first, Math.max(60_000, count * 2));
    const after = procStats(m.pid);
    let loop: { p99?: number; max?: number } = {};
    if (mode === "in-process") {
      m.send({ loop: "read" });
      loop = ((await m.nextLine())?.loop ?? {}) as typeof loop;
    }
    const hostsAfter = hostsCpu();
    const machineAfter = machineCpu();
    const self = process.cpuUsage(selfBefore);
    if (profiling && ctx.profileDir) {
      await mkdir(ctx.profileDir, { recursive: true });
      const file = join(ctx.profileDir, `throughput-${mode}-run${run}.cpuprofile`);
      m.send({ profile: "stop", file });
      await m.nextLine();
      // The placements' own window (first submit to last answer) decides the headline; the
      // rest of the profile is the workers' RUNNING reports trickling in.
      const placingS = (answeredAt - start) / 1000;
      const profile = await readProfile(file);
      const shown: ManagerProfile = {
        file,
        top: topFrames(profile, 25),
        placingS,
        placingSelf: topFrames(profile, 25, { toS: placingS }),
        placingTotal: topFrames(profile, 40, { toS: placingS, total: true }),
      };
      profiles.push(shown);
      for (const [h, host] of hosts.entries()) {
        host.send({
          profile: "stop",
          file: join(ctx.profileDir, `hollow-${mode}-run${run}-h${h}.cpuprofile`),
        });
        await host.nextLine();
      }
      const lines = (frames: readonly Frame[]) =>
        frames.map((f) => `  ${f.selfPercent.toFixed(1).padStart(5)}%  ${f.frame}`).join("\n");
      ctx.progress(
        `run ${run} (${SUFFIX[mode]}): manager profile of the measured window: ${file}\n` +
          `self time, whole window (submit to all RUNNING):\n${lines(shown.top)}\n` +
          `self time, placing (the first ${placingS.toFixed(1)} s, submit to last answer):\n${lines(shown.placingSelf)}\n` +
          `total time (self + callees), placing:\n${lines(shown.placingTotal)}`,
      );
    }
    const { placedAt, runningAt, replaced } = await replay(first, fromRevision, prefix, count);

    const firstSubmit = submitted.reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY);
    const latencies = Array.from(runningAt, (at, i) => at - (submitted[i] as number));
    const lastPlaced = placedAt.reduce((a, b) => Math.max(a, b), 0);
    const lastRunning = runningAt.reduce((a, b) => Math.max(a, b), 0);
    const wall = (doneAt - start) / 1000;
    const cpu = after.cpuSeconds - before.cpuSeconds;
    // Graceful, so that a --cpu-prof profile gets written.
    await m.stop(15_000);
    const figures: Record<string, number> = {
      [key(mode, F.placements)]: placed / ((answeredAt - firstSubmit) / 1000),
      [key(mode, F.decisions)]: count / ((lastPlaced - firstSubmit) / 1000),
      [key(mode, F.running)]: count / ((lastRunning - firstSubmit) / 1000),
      [key(mode, F.unplaced)]: count - placed,
      [key(mode, "submit → RUNNING p50 (ms)")]: percentile(latencies, 50),
      [key(mode, "submit → RUNNING p99 (ms)")]: percentile(latencies, 99),
      [key(mode, "manager peak RSS (MiB)")]: after.rssPeakBytes / 2 ** 20,
      [key(mode, "manager CPU (% of one core)")]: (cpu / wall) * 100,
      [key(mode, "manager CPU per task (µs)")]: (cpu / count) * 1e6,
      [key(mode, "hollow workers CPU (% of one core)")]: ((hostsAfter - hostsBefore) / wall) * 100,
      // Where the rest of the machine went: the submitting client (this process), and all.
      [key(mode, "bench client CPU (% of one core)")]:
        ((self.user + self.system) / 1e6 / wall) * 100,
      [key(mode, "machine CPU busy (% of all cores)")]:
        ((machineAfter.busySeconds - machineBefore.busySeconds) /
          (machineAfter.totalSeconds - machineBefore.totalSeconds)) *
        100,
    };
    figures[key(mode, "tasks placed more than once")] = replaced;
    figures[key(mode, `manager CPU idle with ${s.workers} workers (% of one core)`)] = idlePercent;
    figures[key(mode, "hollow workers CPU idle (% of one core)")] = hostsIdlePercent;
    if (mode === "grpc") {
      figures[key(mode, "RunTasks call p50 (ms)")] = percentile(callMs, 50);
      figures[key(mode, "RunTasks call max (ms)")] = Math.max(...callMs);
      figures[key(mode, `RunTasks calls over the CLI's ${CALL_TIMEOUT_MS / 1000} s deadline`)] =
        callMs.filter((ms) => ms > CALL_TIMEOUT_MS).length;
    }
    if (loop.p99 !== undefined) figures[key(mode, "manager event-loop delay p99 (ms)")] = loop.p99;
    if (loop.max !== undefined) figures[key(mode, "manager event-loop delay max (ms)")] = loop.max;
    return { figures, baseline };
  } finally {
    for (const h of hosts) await h.kill();
    await manager?.kill();
    await shm.remove();
    await dir.remove();
  }
}

/** Per task (by index): manager time of its placement and of its RUNNING, from the event log. */
async function replay(
  client: Client<typeof TaskService>,
  fromRevision: bigint,
  prefix: string,
  count: number,
): Promise<{ placedAt: Float64Array; runningAt: Float64Array; replaced: number }> {
  const placedAt = new Float64Array(count);
  const runningAt = new Float64Array(count);
  const placements = new Uint8Array(count);
  let running = 0;
  let watch: ReturnType<typeof watchTasks> | undefined;
  const done = new Promise<void>((resolve, reject) => {
    watch = watchTasks(client, fromRevision, (event) => {
      const task = event.task;
      if (!task?.id.startsWith(prefix)) return;
      const i = Number(task.id.slice(prefix.length));
      if (!(i >= 0 && i < count)) return;
      const at = eventMs(event);
      if (event.type === TaskEventType.STATE_CHANGED && task.state === TaskState.SCHEDULED) {
        placements[i] = Math.min(255, (placements[i] ?? 0) + 1);
      }
      if (task.workerId && placedAt[i] === 0 && task.state >= TaskState.SCHEDULED) placedAt[i] = at;
      if (
        event.type === TaskEventType.STATE_CHANGED &&
        task.state === TaskState.RUNNING &&
        runningAt[i] === 0
      ) {
        runningAt[i] = at;
        if (++running === count) resolve();
      }
    });
    void watch.ended.then((error) => {
      if (error) reject(error);
    });
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      done,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`replay saw ${running}/${count} RUNNING events`)),
          Math.max(60_000, count * 3),
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    watch?.stop();
  }
  return { placedAt, runningAt, replaced: placements.reduce((n, p) => n + (p > 1 ? 1 : 0), 0) };
}

/** Why the wait failed: how many tasks are still PENDING or SCHEDULED, and a few of them. */
async function stuckReport(client: Client<typeof TaskService>, timeoutMs: number): Promise<string> {
  const stuck: string[] = [];
  let count = 0;
  let pageToken = "";
  do {
    const page = await client.listTasks({
      states: [TaskState.PENDING, TaskState.SCHEDULED],
      pageSize: 1000,
      pageToken,
    });
    count += page.tasks.length;
    for (const t of page.tasks.slice(0, 5 - stuck.length)) {
      stuck.push(
        `${t.id} ${TaskState[t.state]} g${t.generation} on ${t.workerId || "-"}${t.reason ? ` (${t.reason})` : ""}`,
      );
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
  return `${count} tasks not RUNNING after ${timeoutMs} ms, e.g. ${stuck.join("; ")}`;
}

/** What every throughput task asks for: a sliver, so a hollow worker holds thousands. */
const SPEC = {
  name: "hollow",
  image: "cube/httpd:local",
  resources: { cpu: 0.01, memoryBytes: 8n << 20n },
};

/**
 * Niceness of the hollow hosts (the manager runs at 0); BENCH_NICE_HOLLOW, default 10. The
 * hollow workers stand for other machines, yet here four processes of them share two cores
 * with the manager and, at 0, the kernel hands them most of the CPU: the manager got ~68 %
 * of a core and placed ~3,500 tasks/s (and ~4,500/s with the assignment window of 16).
 * Niced, the manager gets its core, as it would on a machine of its own. This used to move
 * a third of the tasks (starved workers fell past the heartbeat timeout); the manager's
 * assignment window now bounds what a worker has queued, and no task moves.
 */
const NICE_HOLLOW = Number(process.env.BENCH_NICE_HOLLOW ?? 10);

/** Tasks submitted and waited for before measuring. */
const WARM_UP = 200;

/**
 * Polls until no task is PENDING or SCHEDULED (ListTasks with a state filter, one per page);
 * resolves with Date.now() when so.
 */
async function untilAllRunning(
  client: Client<typeof TaskService>,
  timeoutMs: number,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const page = await client.listTasks({
      states: [TaskState.PENDING, TaskState.SCHEDULED],
      pageSize: 1,
    });
    if (page.tasks.length === 0) return Date.now();
    if (Date.now() > deadline) throw new Error(await stuckReport(client, timeoutMs));
    // Not more often: each poll scans the task table behind the first match (~5 ms with
    // 100,000 tasks), and at 50 ms the polls took a tenth of the manager's time. The
    // figures come from event times, not from this answer.
    await new Promise((r) => setTimeout(r, 250));
  }
}
