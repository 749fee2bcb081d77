import { type Clock, systemClock } from "../../lib/clock.js";
import type { Logger } from "../../lib/logger.js";
import type { SchedulerName } from "./placer.js";

/**
 * How a manager runs. Every duration is in milliseconds; every field but `dataDir` has a default.
 *
 * Failure detection trade-off: with the defaults (heartbeat 500 ms, heartbeat timeout 2 s,
 * down grace 1 s) a worker killed with kill -9 (its stream ends at once) is DOWN after 1 s and
 * its tasks RUNNING elsewhere within ~3 s, and a worker whose network died silently is DOWN
 * after 2 s. The price is flapping on a slow or lossy network: a worker that stalls for more
 * than the timeout (GC pause, congested link, overloaded host), or whose reconnect takes
 * longer than the grace, has its tasks moved, and when it comes back its copies are stopped —
 * churn, never two live copies for longer than one reconcile. On such networks raise
 * `heartbeatTimeoutMs` and `downGraceMs` (e.g. 10 s and 30 s): tasks then take longer to move
 * after a real failure.
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
   * A READY worker silent for this long is DOWN at once (its stream is closed) and its tasks
   * move. Keep it several heartbeat intervals long. Default 2000.
   */
  heartbeatTimeoutMs?: number;
  /**
   * A worker whose stream ended is DISCONNECTED; if it does not reconnect within this long it
   * is DOWN and its tasks move. Also the time workers get to reconnect after a manager
   * restart before their tasks move. Default 1000.
   */
  downGraceMs?: number;
  /**
   * After the manager starts, how long known workers get to reconnect before they are DOWN
   * and their tasks move. Longer than `downGraceMs` because a worker that lost its manager
   * backs off between attempts (up to 5 s with cube's worker), and a manager restart should
   * not move every task of every healthy worker. Default max(downGraceMs, 6000).
   */
  startupGraceMs?: number;
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
  /** Time a container gets between SIGTERM and SIGKILL on STOP. Default 10,000. */
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
}

/** The options with every default filled in. */
export type ResolvedOptions = Required<Omit<ManagerOptions, "dataDir" | "logger">>;

/** Fills in the defaults and rejects nonsense (negative or non-finite durations). */
export function resolveOptions(options: Omit<ManagerOptions, "dataDir">): ResolvedOptions {
  const resolved: ResolvedOptions = {
    listen: options.listen ?? "127.0.0.1:5555",
    scheduler: options.scheduler ?? "fit",
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? 500,
    heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 2000,
    downGraceMs: options.downGraceMs ?? 1000,
    startupGraceMs: options.startupGraceMs ?? Math.max(options.downGraceMs ?? 1000, 6000),
    watchBufferSize: options.watchBufferSize ?? 10_000,
    watchHistorySize: options.watchHistorySize ?? 10_000,
    eventRetention: options.eventRetention ?? 500_000,
    stopGraceMs: options.stopGraceMs ?? 10_000,
    shutdownTimeoutMs: options.shutdownTimeoutMs ?? 5000,
    assignmentWindow: Math.max(1, options.assignmentWindow ?? 16),
    clock: options.clock ?? systemClock,
    metrics: options.metrics ?? true,
  };
  for (const [name, value] of Object.entries(resolved)) {
    if (typeof value === "number" && !(Number.isFinite(value) && value >= 0)) {
      throw new Error(`manager option ${name}: ${value} is not a non-negative number`);
    }
  }
  if (resolved.heartbeatIntervalMs <= 0) throw new Error("heartbeatIntervalMs must be above 0");
  if (resolved.heartbeatTimeoutMs <= resolved.heartbeatIntervalMs) {
    throw new Error(
      `heartbeatTimeoutMs (${resolved.heartbeatTimeoutMs}) must exceed heartbeatIntervalMs (${resolved.heartbeatIntervalMs})`,
    );
  }
  return resolved;
}
