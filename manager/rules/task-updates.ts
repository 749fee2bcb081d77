import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { DesiredState, HealthStatus, TaskEventType, TaskState } from "../../gen/cube/v1/task_pb.js";
import type {
  HealthReport,
  InventoryItem,
  Progress,
  TaskUpdate,
} from "../../gen/cube/v1/worker_service_pb.js";
import type { Clock } from "../../lib/clock.js";
import { printable } from "../../lib/printable-text.js";
import { isFinished, stateName } from "../../lib/task-state.js";
import { TrailingThrottle } from "../../lib/trailing-throttle.js";
import type { ControlPlane } from "../core/control-plane.js";
import { ended, refusedReport, running, stopped, type TaskPatch } from "../core/lifecycle.js";
import type { TaskEntry } from "../core/task-table.js";
import type { WorkerEntry } from "../core/worker-table.js";
import { taskEnded, taskUnhealthy } from "./restarts.js";
import { LIMITS } from "./validate-spec.js";

/**
 * Characters of a worker's report (a reason, a health or progress message) kept: Docker's
 * errors run long, and whatever a worker says is stored in every event of the task.
 */
export const REPORT_TEXT_LIMIT = 2048;
/** Characters of a container id kept (Docker's are 64). */
export const CONTAINER_ID_LIMIT = 128;
/** Characters of a published port's host address kept (an IPv6 address has at most 45). */
const HOST_IP_LIMIT = 64;

/** `text` cut to `limit` characters, saying so, so that nothing is shortened silently. */
export function clip(text: string, limit = REPORT_TEXT_LIMIT): string {
  return text.length <= limit
    ? text
    : `${text.slice(0, limit)}… (cut from ${text.length} characters)`;
}

/**
 * Free text a worker sent (a reason, a health, progress or engine message, a container id),
 * as the manager keeps it: control and bidirectional characters escaped (lib/printable-text.ts:
 * the text is the worker's, or Docker's or a registry's, and ends up on people's terminals),
 * then cut to `limit` characters. Every text taken from a worker goes through here.
 */
export function workerText(text: string, limit = REPORT_TEXT_LIMIT): string {
  return clip(printable(text), limit);
}

/** The ports a worker reports, as kept: no more than a spec may hold, host addresses as {@link workerText}. */
export function workerPorts(ports: TaskUpdate["ports"]): TaskUpdate["ports"] {
  const kept = ports.length > LIMITS.portCount ? ports.slice(0, LIMITS.portCount) : ports;
  return kept.some((p) => workerText(p.hostIp, HOST_IP_LIMIT) !== p.hostIp)
    ? kept.map((p) => ({ ...p, hostIp: workerText(p.hostIp, HOST_IP_LIMIT) }))
    : kept;
}

/** An inventory item with its container id and ports as {@link workerText} keeps them. */
export function workerItem(item: InventoryItem): InventoryItem {
  const containerId = workerText(item.containerId, CONTAINER_ID_LIMIT);
  const ports = workerPorts(item.ports);
  return containerId === item.containerId && ports === item.ports
    ? item
    : { ...item, containerId, ports };
}

/** Progress events of one task are kept at most this often (pull progress comes fast). */
const PROGRESS_EVERY_MS = 250;

/** The task an update is about, if the update is about its current placement; else undefined. */
function current(
  cp: ControlPlane,
  worker: WorkerEntry,
  taskId: string,
  generation: bigint,
): TaskEntry | undefined {
  const entry = cp.tasks.get(taskId);
  if (!entry || entry.task.workerId !== worker.id || entry.task.generation !== generation) {
    cp.logger.debug(
      { task: taskId, worker: worker.id, generation: Number(generation) },
      "ignored a message about a stale or unknown task",
    );
    return undefined;
  }
  return entry;
}

/**
 * Applies a worker's TaskUpdate. Updates of another generation or worker are stale and
 * ignored (the inventory reconcile deals with their containers). A move a worker may not
 * report (see {@link refusedReport}) is refused with a warning naming why, and the task stays
 * as it is. A task meant to stop that ends is COMPLETED "stopped"; a task that ends otherwise
 * goes through its restart policy.
 */
export function applyUpdate(cp: ControlPlane, worker: WorkerEntry, update: TaskUpdate): void {
  const entry = current(cp, worker, update.taskId, update.generation);
  if (!entry) return;
  const task = entry.task;
  const reason = workerText(update.reason);
  // What the worker sees of its container, whatever the state does.
  const seen: TaskPatch = {};
  const containerId = workerText(update.containerId, CONTAINER_ID_LIMIT);
  if (containerId && containerId !== task.containerId) seen.containerId = containerId;
  if (update.ports.length > 0) seen.ports = workerPorts(update.ports);
  if (update.state === task.state) {
    if (Object.keys(seen).length > 0) cp.touch(entry, seen);
    return;
  }
  if (isFinished(task.state) && isFinished(update.state)) return; // ended already: old news
  const stopping = task.desiredState === DesiredState.STOPPED;
  // However a container meant to stop ended, the stop has taken effect.
  const to = stopping && isFinished(update.state) ? TaskState.COMPLETED : update.state;
  const refused = refusedReport(task.state, to);
  if (refused) {
    cp.logger.warn(
      {
        task: task.id,
        worker: worker.id,
        generation: Number(update.generation),
        seq: Number(update.seq),
        from: stateName(task.state),
        to: stateName(to),
        reason: refused,
      },
      "refused an update with an illegal state move",
    );
    return;
  }
  const at = update.time ?? timestampFromMs(cp.clock.now());
  if (to === TaskState.RUNNING) {
    cp.change(entry, { ...seen, ...running(at, reason) }, TaskEventType.STATE_CHANGED, reason);
  } else if (stopping) {
    cp.change(
      entry,
      { ...seen, ...stopped(at, update.exitCode) },
      TaskEventType.STATE_CHANGED,
      "stopped",
    );
  } else if (to === TaskState.COMPLETED || to === TaskState.FAILED) {
    // The only other moves refusedReport lets through.
    const patch = { ...seen, ...ended(to, reason, at, update.exitCode) };
    taskEnded(cp, entry, patch, to === TaskState.FAILED ? "failed" : "completed");
  }
}

/**
 * The worker acknowledged a STOP of a task it holds nothing of (its RUN never reached it):
 * nothing is left to stop and no update will come, so a task still placed there at that
 * generation and meant to stop is COMPLETED "stopped" now. Without this it stayed SCHEDULED,
 * holding its place (a spread slot, a drain's tasks left) until the worker reconnected.
 */
export function applyStopNotHeld(
  cp: ControlPlane,
  worker: WorkerEntry,
  taskId: string,
  generation: bigint,
): void {
  const entry = current(cp, worker, taskId, generation);
  if (!entry) return;
  const task = entry.task;
  if (task.desiredState !== DesiredState.STOPPED || isFinished(task.state)) return;
  cp.change(
    entry,
    stopped(cp.clock.now()),
    TaskEventType.STATE_CHANGED,
    `stopped (${worker.label} never had it: the stop came before it was sent)`,
  );
}

/**
 * Records a health change; an UNHEALTHY task goes through its restart policy. Only a RUNNING
 * task has a health to change: a report of a task still SCHEDULED (or UNKNOWN, or ended) at
 * this worker and generation is ignored with a debug log, as a stale one is (a worker checks
 * only a container it reported started, and that report comes first up the stream).
 */
export function applyHealth(cp: ControlPlane, worker: WorkerEntry, report: HealthReport): void {
  const entry = current(cp, worker, report.taskId, report.generation);
  if (!entry) return;
  if (entry.task.state !== TaskState.RUNNING) {
    cp.logger.debug(
      {
        task: report.taskId,
        worker: worker.id,
        generation: Number(report.generation),
        state: stateName(entry.task.state),
      },
      "ignored a health report of a task that is not RUNNING",
    );
    return;
  }
  if (entry.task.health === report.status) return;
  if (report.status !== HealthStatus.HEALTHY && report.status !== HealthStatus.UNHEALTHY) return;
  const message = workerText(report.message) || HealthStatus[report.status];
  cp.change(entry, { health: report.status }, TaskEventType.HEALTH_CHANGED, message);
  if (report.status === HealthStatus.UNHEALTHY) taskUnhealthy(cp, entry, worker, message);
}

/**
 * Records pull or start progress as a PROGRESS event, at most one per task per 250 ms,
 * trailing-edge: progress inside the window is held (the latest only) and recorded when the
 * window ends, so the last figure before a stall is the one people see — unless the task has
 * moved on by then (another state, generation or worker: no progress after RUNNING). The
 * first progress and a finished one (every byte in) are recorded at once.
 */
export function applyProgress(cp: ControlPlane, worker: WorkerEntry, progress: Progress): void {
  const entry = current(cp, worker, progress.taskId, progress.generation);
  if (!entry || isFinished(entry.task.state)) return;
  const { state, generation, workerId } = entry.task;
  const done = progress.totalBytes > 0n && progress.currentBytes >= progress.totalBytes;
  entry.progress ??= new TrailingThrottle(PROGRESS_EVERY_MS, (record) => record(), timersOf(cp));
  entry.progress.offer(() => {
    const task = entry.task;
    if (task.state !== state || task.generation !== generation || task.workerId !== workerId) {
      return;
    }
    recordProgress(cp, entry, progress);
  }, done);
}

/** The control plane's clock, with its timers (cancelled when it closes). */
function timersOf(cp: ControlPlane): Clock {
  return {
    now: () => cp.clock.now(),
    setTimeout: (fn, ms) => cp.timer(ms, fn),
    clearTimeout: (handle) => cp.clearTimer(handle),
  };
}

function recordProgress(cp: ControlPlane, entry: TaskEntry, progress: Progress): void {
  const pct =
    progress.totalBytes > 0n
      ? ` ${Number((progress.currentBytes * 100n) / progress.totalBytes)}%`
      : "";
  cp.change(entry, {}, TaskEventType.PROGRESS, `${workerText(progress.message)}${pct}`);
}
