import { type Clock, systemClock } from "../../lib/clock.js";
import { formatDuration } from "../../lib/format-ms.js";
import type { Logger } from "../../lib/logger.js";
import { DEFAULT_STOP_GRACE_MS } from "../../lib/stop-grace.js";
import type { SchedulerName } from "./placer.js";

/**
 * How a manager runs. Every duration is in milliseconds; every field but `dataDir` has a default.
 *
 * Failure detection, and why disconnection is not death. A worker whose stream ends, or that
 * is silent past `heartbeatTimeoutMs`, is DISCONNECTED and its tasks UNKNOWN ("lost contact",
 * with the time): nothing is stopped or started. Only once it is DOWN, `downGraceMs` later,
 * are its tasks replaced on other workers (next generation). If it comes back after that,
 * its inventory is reconciled so that exactly one copy of each task survives, and the task's
 * events say which and why: when its agent restarted (a new Register.agent_started_at) and
 * is back within `restartGraceMs`, the copies it still runs (its containers ran on under the
 * engine; the replacements are stopped); otherwise the replacement when it is RUNNING (and
 * healthy, when it has a health check), else the returning copy, which the task points at
 * again.
 *
 * Why replace before knowing. When a stream ends, the manager cannot tell a crashed agent
 * (its containers still run, it will be back in a second or two) from a dead host (they are
 * gone). It heals as for a dead host — with heartbeat 500 ms, timeout 2 s and down grace
 * 1 s, a worker process killed with kill -9 has its tasks placed elsewhere after 1 s — and an
 * agent that comes back restarted keeps its containers, so the only cost of a crash is a
 * replacement that ran for a moment. Planned restarts start not even that: on SIGTERM a
 * worker says it is restarting, and the manager then waits `restartGraceMs` (30 s) instead.
 * On a slow or lossy network raise `heartbeatTimeoutMs` and `downGraceMs` (e.g. 10 s and
 * 30 s): real failures then take that much longer to heal.
 *
 * The manager never blames workers for its own stalls: silence is measured against its own
 * event loop, and a stall (GC pause, overload, SIGSTOP) longer than a heartbeat interval gives
 * every worker a fresh silence clock, and every DISCONNECTED worker — and one whose stream
 * ends right after the stall — at least `startupGraceMs` to come back (a worker that lost its
 * manager backs off up to 5 s between dials).
 */
export interface ManagerOptions {
  /** host:port to serve on; port 0 picks a free one. Default "127.0.0.1:5555". */
  listen?: string;
  /** Directory of the manager's LevelDB (created when missing); one manager per directory. */
  dataDir: string;
  /** Placement policy. Default "fit" (never over-commits declared cpu, memory and disk). */
  scheduler?: SchedulerName;
  /** How often a worker must say something (it sends a heartbeat when idle). Default 500. */
  heartbeatIntervalMs?: number;
  /**
   * A READY worker silent for this long (by the manager's own running time: see the stall
   * rule above) has its stream closed and is DISCONNECTED, its tasks UNKNOWN; DOWN after
   * `downGraceMs` more. Keep it several heartbeat intervals long. Default 2000.
   */
  heartbeatTimeoutMs?: number;
  /**
   * A worker whose stream ended (or fell silent) is DISCONNECTED and its tasks UNKNOWN; if it
   * does not reconnect within this long it is DOWN and its tasks are replaced elsewhere.
   * Default 1000.
   */
  downGraceMs?: number;
  /**
   * How long the manager waits for a worker that said it is restarting (it sent Leaving with
   * restarting set, as cube's worker does on SIGTERM) before it is DOWN and its tasks are
   * replaced. Long enough for an agent upgrade or a service restart; a worker stopped for good
   * this way has its tasks replaced only this much later. Default 30,000.
   */
  restartGraceMs?: number;
  /**
   * An assignment a worker has not acknowledged for this long is sent again (then again
   * each period), on the same stream: a worker that could not apply it (its engine was
   * down, its store failed) gets another chance without waiting for a reconnect. Applying
   * one twice is harmless. Default 5000.
   */
  assignmentResendMs?: number;
  /**
   * After the manager starts, how long known workers get to reconnect before they are DOWN
   * and their tasks move. Longer than `downGraceMs` because a worker that lost its manager
   * backs off between attempts (up to 5 s with cube's worker), and a manager restart should
   * not move every task of every healthy worker. Default max(downGraceMs, 6000).
   */
  startupGraceMs?: number;
  /**
   * Calls need a bearer token of the right role (manager/api/authorization.ts). Default
   * true; false only for in-process tests and benchmarks that say so.
   */
  auth?: boolean;
  /**
   * Serve TLS (and mTLS for workers) with the cluster's own CA, made in `<dataDir>/tls` on
   * the first start (manager/api/cluster-tls.ts). Default false: plaintext, allowed on a
   * loopback address only unless `insecure`.
   */
  tls?: boolean;
  /** How long a worker's certificate is valid; workers renew it in its last third. Default 30 days. */
  workerCertificateMs?: number;
  /**
   * Serve plaintext on a non-loopback address. Refused without it: anyone on the network
   * could read tokens and task specs off the wire. Default false.
   */
  insecure?: boolean;
  /**
   * Serve GET /metrics (Prometheus text, no token needed) on the API port, and count RPCs
   * for it. Default true.
   */
  metrics?: boolean;
  /** Where the rules read the time and set their timers; default the system clock. */
  clock?: Clock;
  /** Structured logger; default `createLogger("manager")`. */
  logger?: Logger;
  /** Events a watcher may have queued before its stream is ended (RESOURCE_EXHAUSTED). Default 10,000. */
  watchBufferSize?: number;
  /** Recent events kept in memory to serve resuming watchers without a disk read. Default 10,000. */
  watchHistorySize?: number;
  /** Events kept on disk; older ones are dropped and a watch from before them is OUT_OF_RANGE. Default 500,000. */
  eventRetention?: number;
  /** Time a container gets between SIGTERM and SIGKILL on STOP, for a task whose spec sets no stop_timeout. Default 10,000. */
  stopGraceMs?: number;
  /** Longest a graceful close waits for in-flight work before closing anyway. Default 5000. */
  shutdownTimeoutMs?: number;
  /**
   * Assignments (of distinct tasks) a worker may have unacknowledged; more wait in the
   * manager, in order, until acks come back. Flow control: a worker that falls behind
   * holds a bounded queue, so it keeps answering pings and heartbeats instead of drowning
   * in a backlog and being taken for dead. Default 16: a worker acks a RUN once its container
   * started, and Docker starts a burst no faster with more in flight (40 tasks on one worker:
   * ~6-7 s with 8, 16 or 256), while a thousand hollow workers sharing two cores kept up
   * with placements (0 moved instead of 11,000 at 256) and ran them 30 % faster.
   */
  assignmentWindow?: number;
  /**
   * An ended task (COMPLETED or FAILED, no restart to come, no longer a job's replica) is
   * removed this long after it ended: a DELETED event, then NOT_FOUND (rules/task-gc.ts).
   * 0 keeps them by age. Default 4 h, as Nomad's job_gc_threshold.
   */
  taskGcAfterMs?: number;
  /** Ended replicas kept per job, whatever their age; older ones go at once. Default 10. */
  jobTaskHistory?: number;
  /**
   * A worker DOWN this long (since its Worker.down_since, kept across manager restarts) and
   * holding no task is removed as NodeService.RemoveNode removes it (rules/node-gc.ts): it
   * leaves every list and the store, and an agent that dials in later registers as new.
   * 0 keeps them. Default 24 h, as Nomad's node_gc_threshold.
   */
  nodeGcAfterMs?: number;
}

/** The options with every default filled in. */
export type ResolvedOptions = Required<Omit<ManagerOptions, "dataDir" | "logger">>;

/**
 * A manager option refused by {@link resolveOptions}. Its message names the options as this
 * module does ("heartbeatTimeoutMs"); {@link describe} names them as a front end does (`cube
 * manager`: its flags or CUBE_* variables), so the rule is written once, here.
 */
export class OptionsError extends Error {
  readonly #render: (name: (option: string) => string) => string;

  constructor(render: (name: (option: string) => string) => string) {
    super(render((option) => option));
    this.name = "OptionsError";
    this.#render = render;
  }

  /** The message with each option named by `name`. */
  describe(name: (option: string) => string): string {
    return this.#render(name);
  }
}

/** Fills in the defaults and rejects nonsense (negative or non-finite durations). */
export function resolveOptions(options: Omit<ManagerOptions, "dataDir">): ResolvedOptions {
  const resolved: ResolvedOptions = {
    listen: options.listen ?? "127.0.0.1:5555",
    scheduler: options.scheduler ?? "fit",
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? 500,
    heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 2000,
    downGraceMs: options.downGraceMs ?? 1000,
    startupGraceMs: options.startupGraceMs ?? Math.max(options.downGraceMs ?? 1000, 6000),
    restartGraceMs: options.restartGraceMs ?? 30_000,
    assignmentResendMs: options.assignmentResendMs ?? 5000,
    watchBufferSize: options.watchBufferSize ?? 10_000,
    watchHistorySize: options.watchHistorySize ?? 10_000,
    eventRetention: options.eventRetention ?? 500_000,
    stopGraceMs: options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS,
    shutdownTimeoutMs: options.shutdownTimeoutMs ?? 5000,
    assignmentWindow: Math.max(1, options.assignmentWindow ?? 16),
    taskGcAfterMs: options.taskGcAfterMs ?? 4 * 3600_000,
    jobTaskHistory: options.jobTaskHistory ?? 10,
    nodeGcAfterMs: options.nodeGcAfterMs ?? 24 * 3600_000,
    clock: options.clock ?? systemClock,
    metrics: options.metrics ?? true,
    auth: options.auth ?? true,
    insecure: options.insecure ?? false,
    tls: options.tls ?? false,
    workerCertificateMs: options.workerCertificateMs ?? 30 * 24 * 3600_000,
  };
  for (const [option, value] of Object.entries(resolved)) {
    if (typeof value === "number" && !(Number.isFinite(value) && value >= 0)) {
      throw new OptionsError((n) => `${n(option)}: ${value} is not a non-negative number`);
    }
  }
  for (const option of ["heartbeatIntervalMs", "assignmentResendMs"] as const) {
    if (resolved[option] <= 0) throw new OptionsError((n) => `${n(option)} must be above 0`);
  }
  const { heartbeatIntervalMs: interval, heartbeatTimeoutMs: timeout } = resolved;
  if (timeout <= interval) {
    throw new OptionsError(
      (n) =>
        `${n("heartbeatTimeoutMs")} (${formatDuration(timeout)}) must exceed ${n("heartbeatIntervalMs")} (${formatDuration(interval)})`,
    );
  }
  return resolved;
}
