import { ConnectError } from "@connectrpc/connect";
import { DesiredState, TaskEventType, TaskState } from "../../gen/cube/v1/task_pb.js";
import { WorkerStatus } from "../../gen/cube/v1/worker_pb.js";
import { timestampLiteral } from "../../lib/timestamp.js";
import type { ControlPlane } from "../core/control-plane.js";
import { lostContact, stopped } from "../core/lifecycle.js";
import type { WorkerEntry } from "../core/worker-table.js";
import { place } from "./placing.js";
import { formatMs } from "./restart-policy.js";
import { cancelRestart } from "./restarts.js";

/*
 * Disconnection is not death. A worker whose stream ends or falls silent is DISCONNECTED and
 * its tasks UNKNOWN; only when it is not back within its grace is it DOWN and are its tasks
 * replaced. The grace is the down grace, the restart grace after a goodbye that said the
 * worker is restarting, and at least the start-up grace after a manager restart or stall.
 * Every decision first checks that the manager itself has been running: silence measured
 * across a stall of the manager is the manager's, not the worker's.
 */

/**
 * What a DISCONNECTED worker's grace will say when it runs out, before " within <grace>":
 * "no reconnect", "not back after restarting", …
 */
type GraceKind = "no reconnect" | "not back after restarting" | "did not reconnect";

/** The grace length a worker gets, and its kind, after its stream ended at `now`. */
function graceFor(cp: ControlPlane, worker: WorkerEntry, now: number) {
  const { downGraceMs, restartGraceMs, startupGraceMs, heartbeatTimeoutMs } = cp.options;
  let ms = downGraceMs;
  let kind: GraceKind = "no reconnect";
  if (worker.leaving?.restarting) {
    ms = restartGraceMs;
    kind = "not back after restarting";
  }
  // Streams that died while the manager was stalled show up as ends right after it: their
  // workers have been dialling a manager that did not answer, and back off up to 5 s.
  if (now - cp.workers.loop.lastStallEndMs <= heartbeatTimeoutMs && ms < startupGraceMs) {
    ms = startupGraceMs;
  }
  return { ms, kind };
}

/**
 * A worker's stream ended (`why`), or it fell silent: DISCONNECTED now, and every task on it
 * UNKNOWN ("lost contact", with the time) — its containers may well still run. DOWN, and
 * its tasks replaced, unless it is back within its grace. The caller has ended the stream.
 */
export function workerDisconnected(cp: ControlPlane, worker: WorkerEntry, why: string): void {
  noteProgress(cp);
  if (worker.status !== WorkerStatus.READY) return;
  const now = cp.clock.now();
  worker.connection = undefined;
  worker.setStatus(WorkerStatus.DISCONNECTED);
  cp.workerFeed.notify(worker.id);
  const grace = graceFor(cp, worker, now);
  const leaving = worker.leaving;
  const how = leaving?.restarting
    ? `restarting${leaving.reason ? ` (${leaving.reason})` : ""}`
    : why;
  cp.logger.warn(
    {
      worker: worker.id,
      workerName: worker.record.name,
      why: how,
      graceMs: grace.ms,
      tasks: worker.tasks.size,
    },
    "worker DISCONNECTED: its tasks are UNKNOWN",
  );
  const message = `lost contact with worker ${worker.label}: ${how}`;
  for (const id of worker.tasks) {
    const entry = cp.tasks.get(id);
    if (!entry) continue;
    const state = entry.task.state;
    if (state !== TaskState.SCHEDULED && state !== TaskState.RUNNING) continue;
    // A restart waiting out its back-off would move the task; it is decided again on return.
    cancelRestart(cp, entry);
    cp.change(entry, lostContact(message, now), TaskEventType.STATE_CHANGED, message);
  }
  armDown(cp, worker, grace.ms, grace.kind);
}

/** (Re-)arms a DISCONNECTED worker's grace: `ms` from now it is DOWN. */
function armDown(cp: ControlPlane, worker: WorkerEntry, ms: number, kind: GraceKind): void {
  cp.clearTimer(worker.downTimer);
  worker.downGrace = { ms, why: kind };
  worker.downTimer = cp.timer(ms, () => {
    worker.downTimer = undefined;
    // The timer may fire late because the manager stalled: then the grace starts over.
    if (noteProgress(cp)) return;
    workerDown(cp, worker, `${kind} within ${formatMs(ms)}`);
  });
}

/** The worker is back (it registered): its grace stops. */
export function workerBack(cp: ControlPlane, worker: WorkerEntry): void {
  cp.clearTimer(worker.downTimer);
  worker.downTimer = undefined;
  worker.downGrace = undefined;
  worker.leaving = undefined;
}

/**
 * A worker is gone: DOWN, and each of its unfinished tasks is replaced on another worker
 * with the next generation (PENDING when none fits); tasks meant to stop are COMPLETED
 * "stopped". When the worker comes back, the reconcile of its inventory keeps one copy of
 * each task (see manager/rules/reconcile.ts).
 */
export function workerDown(cp: ControlPlane, worker: WorkerEntry, why: string): void {
  cp.clearTimer(worker.downTimer);
  worker.downTimer = undefined;
  worker.downGrace = undefined;
  if (worker.status === WorkerStatus.DOWN) return;
  const conn = worker.connection;
  worker.connection = undefined;
  conn?.end(new ConnectError(`worker marked DOWN: ${why}`));
  worker.setStatus(WorkerStatus.DOWN);
  // When it went DOWN, stored with its record (a new object, so the store writes it anew):
  // node GC (rules/node-gc.ts) counts from it across manager restarts. A record loaded with
  // one (it was DOWN when the manager stopped) keeps it; one without (an older store)
  // counts from now. Registering again builds a record without it.
  const downSince = worker.record.downSince ?? timestampLiteral(cp.clock.now());
  worker.setRecord({ ...worker.record, downSince });
  cp.saveWorker(worker);
  worker.leaving = undefined;
  worker.unacked.clear();
  worker.resetWindow();
  worker.taskMetrics.clear();
  cp.workerFeed.notify(worker.id);
  cp.logger.warn(
    { worker: worker.id, workerName: worker.record.name, why, tasks: worker.tasks.size },
    "worker DOWN: its tasks are replaced",
  );
  const avoid = new Set([worker.id]);
  for (const id of [...worker.tasks]) {
    const entry = cp.tasks.get(id);
    if (!entry) continue;
    if (entry.task.desiredState === DesiredState.STOPPED) {
      cp.change(
        entry,
        stopped(cp.clock.now()),
        TaskEventType.STATE_CHANGED,
        `stopped (worker ${worker.label} is DOWN)`,
      );
      continue;
    }
    cancelRestart(cp, entry);
    // Its copy here may come back with the worker: then, and only then, it may be kept.
    cp.noteMovedOff(entry, worker.id);
    // Not a restart: the task did not fail, its worker was lost (and its copy there may be
    // kept when the worker is back), so its restart count and back-off stay as they were.
    place(cp, entry, {
      avoid,
      placedMessage: (w) => `replaced: moved from ${worker.label} (DOWN: ${why}) to ${w.label}`,
      reasonPrefix: `worker ${worker.label} is DOWN; `,
    });
  }
}

/**
 * After a load: every known worker gets the start-up grace to reconnect before it is DOWN.
 * Its tasks keep their last known state meanwhile (marking every task of the cluster
 * UNKNOWN on each manager restart would cost an event per task and tell nobody anything).
 */
export function startupGrace(cp: ControlPlane): void {
  const grace = cp.options.startupGraceMs;
  for (const worker of cp.workers.all()) armDown(cp, worker, grace, "did not reconnect");
}

/** How often the manager notes its own progress, and how late a check must be to be a stall. */
function progressLimits(cp: ControlPlane): { tickMs: number; stallMs: number } {
  const beat = cp.options.heartbeatIntervalMs;
  const tickMs = Math.max(10, Math.floor(beat / 2));
  return { tickMs, stallMs: tickMs + beat };
}

/**
 * Starts the control plane's progress ticker (through `cp.clock`): every half heartbeat
 * interval it notes that the manager's loop runs, so that a stall shows as a late tick.
 */
export function watchProgress(cp: ControlPlane): void {
  const { tickMs } = progressLimits(cp);
  cp.workers.loop.lastCheckMs = cp.clock.now();
  const tick = () => {
    noteProgress(cp);
    cp.timer(tickMs, tick);
  };
  cp.timer(tickMs, tick);
}

/**
 * Notes that the manager's loop runs now, and returns whether it had stalled: whether the
 * last check (the ticker's, or a liveness decision's) is more than a tick and a heartbeat
 * interval ago. A stall — a GC pause, an overloaded host, a SIGSTOP — is the manager's own:
 * every READY worker's silence clock starts over (and messages that queued in its socket
 * meanwhile are read before its timeout can be reached again), and every DISCONNECTED
 * worker's grace starts over, at least the start-up grace long (its dials went unanswered
 * too). Liveness decisions call this first and skip their turn when it returns true.
 */
export function noteProgress(cp: ControlPlane): boolean {
  const now = cp.clock.now();
  const loop = cp.workers.loop;
  const last = loop.lastCheckMs;
  loop.lastCheckMs = now;
  if (last === 0 || now - last <= progressLimits(cp).stallMs) return false;
  loop.lastStallEndMs = now;
  loop.stalls++;
  let fresh = 0;
  let regraced = 0;
  for (const worker of cp.workers.all()) {
    if (worker.status === WorkerStatus.READY) {
      worker.lastSeenMs = Math.max(worker.lastSeenMs, now);
      fresh++;
    } else if (worker.status === WorkerStatus.DISCONNECTED && worker.downGrace) {
      const { ms, why } = worker.downGrace;
      armDown(cp, worker, Math.max(ms, cp.options.startupGraceMs), why as GraceKind);
      regraced++;
    }
  }
  cp.logger.warn(
    { stalledMs: now - last, ready: fresh, disconnected: regraced },
    "the manager stalled: every worker gets a fresh grace",
  );
  return true;
}
