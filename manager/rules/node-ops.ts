/**
 * Cordon, drain and uncordon a worker (NodeService). A cordoned worker takes no new task
 * (WorkerEntry.setCordoned makes its scheduler view not ready, "cordoned"). A drain cordons it
 * and moves its tasks off:
 * - a job's replicas through the job reconciler, which sees them as "leaving": replacements
 *   start elsewhere first, at most max_parallel per job not yet healthy at a time, and a
 *   leaving replica stops once enough healthy ones stand without it;
 * - other tasks (one copy each) are moved one by one, as a DOWN worker's are: a new
 *   generation on a worker that fits and a STOP of the old container here; the next moves
 *   once that one is ready elsewhere (RUNNING, and HEALTHY when it has a health check) or
 *   has ended, so a drain never takes down every plain service at once. One that fits
 *   nowhere waits.
 * At the deadline, job replicas still here are stopped (and replaced), and other tasks are
 * moved all at once, even when no worker fits (PENDING until one does). The drain is COMPLETE (or
 * DEADLINE_REACHED) once no task holds resources on the worker. The node's record is stored
 * with the next group commit; a manager that restarts resumes the drain.
 */
import { create } from "@bufbuild/protobuf";
import { durationMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { NodeRecordSchema } from "../../gen/cube/store/v1/jobs_pb.js";
import {
  type Drain,
  DrainSchema,
  DrainStatus,
  type Node,
  NodeSchema,
} from "../../gen/cube/v1/node_service_pb.js";
import { DesiredState, TaskState } from "../../gen/cube/v1/task_pb.js";
import { WorkerStatus } from "../../gen/cube/v1/worker_pb.js";
import { AssignmentAction } from "../../gen/cube/v1/worker_service_pb.js";
import { quote } from "../../lib/quote.js";
import { isFinished, isReady } from "../../lib/task-state.js";
import { timestampLiteral } from "../../lib/timestamp.js";
import type { ControlPlane } from "../core/control-plane.js";
import type { TaskEntry } from "../core/task-table.js";
import type { WorkerEntry } from "../core/worker-table.js";
import { queueReconcile } from "./job-ops.js";
import { place, taskRequest } from "./placing.js";
import { cancelRestart } from "./restarts.js";
import { LIMITS } from "./validate-spec.js";

/** How long a drain may take when the request does not say. */
export const DEFAULT_DRAIN_DEADLINE_MS = 5 * 60_000;

/** What runs while a worker drains: its deadline timer, and the watch of its tasks. */
interface Running {
  timer?: ReturnType<ControlPlane["timer"]>;
  readonly stop: AbortController;
  /** The plain task moved last, until it is ready elsewhere or no longer on its way. */
  moving?: TaskEntry;
}
const running = new WeakMap<WorkerEntry, Running>();

/** The worker a name means (an id, or a name only one worker has), or NOT_FOUND. */
export function findNode(cp: ControlPlane, name: string): WorkerEntry {
  const w = name === "" ? undefined : cp.workers.find(name);
  if (!w) {
    throw new ConnectError(
      `name: worker ${quote(name)} not found (give an id, or a name only one worker has)`,
      Code.NotFound,
    );
  }
  return w;
}

/** The worker with its scheduling state, as NodeService shows it. */
export function nodeOf(w: WorkerEntry): Node {
  const drain = w.drain ? { ...w.drain, tasksLeft: w.tasks.size } : undefined;
  return create(NodeSchema, { worker: w.toProto(), cordoned: w.cordoned, drain });
}

function store(cp: ControlPlane, w: WorkerEntry): void {
  cp.store.putNode(
    create(NodeRecordSchema, { workerId: w.id, cordoned: w.cordoned, drain: w.drain }),
  );
  cp.afterCommit(() => cp.workerFeed.notify(w.id));
}

/** Reconciles the jobs with replicas on `w` (they see it draining, or not any more). */
function reconcileJobsOn(cp: ControlPlane, w: WorkerEntry): void {
  for (const job of cp.jobs.all()) if (job.peers.has(w.id)) queueReconcile(cp, job);
}

/** No new task on the worker (CordonNode). */
export async function cordonNode(cp: ControlPlane, name: string): Promise<Node> {
  const w = findNode(cp, name);
  if (!w.cordoned) {
    w.setCordoned(true);
    store(cp, w);
  }
  await cp.committed();
  return nodeOf(w);
}

/**
 * Forgets a worker gone for good (RemoveNode): only a DOWN one holding no task, else
 * FAILED_PRECONDITION saying what is in the way. Its records leave the store; watchers of
 * WorkerService hear it once more, removed. Resolves with the node as it was, once durable.
 */
export async function removeNode(cp: ControlPlane, name: string): Promise<Node> {
  const w = findNode(cp, name);
  if (w.status !== WorkerStatus.DOWN) {
    throw new ConnectError(
      `worker ${w.label} is ${WorkerStatus[w.status]}: only a DOWN worker can be removed (stop its agent; cube node drain moves its tasks off first)`,
      Code.FailedPrecondition,
    );
  }
  if (w.tasks.size > 0) {
    throw new ConnectError(
      `worker ${w.label} still holds ${w.tasks.size} task(s) on their way elsewhere: try again once they are`,
      Code.FailedPrecondition,
    );
  }
  const node = nodeOf(w);
  forgetWorker(cp, w, "removed by an operator");
  await cp.committed();
  return node;
}

/**
 * Forgets a DOWN worker holding no task (the caller checked): the one way out for RemoveNode
 * and node GC (rules/node-gc.ts). A drain of it stops; it leaves the table (every list and
 * placement) at once, and its w/ and n/ records the store with the next group commit; once
 * that is durable, watchers of WorkerService hear it once more, removed, and `why` is logged.
 */
export function forgetWorker(cp: ControlPlane, w: WorkerEntry, why: string): void {
  stopRunning(cp, w);
  cp.workers.remove(w.id);
  cp.store.deleteWorker(w.id);
  cp.afterCommit(() => {
    cp.workerFeed.notify(w.id);
    cp.logger.info({ worker: w.id, workerName: w.record.name, why }, "worker removed");
  });
}

/**
 * Tasks may be placed on the worker again (UncordonNode). A drain under way (moving tasks,
 * or stopping them past its deadline) ends CANCELLED; the record of a drain that had ended
 * is cleared, as Nomad clears a node's drain strategy when it is eligible again: once the
 * worker takes tasks, "deadline reached" would only mislead (the job reconciler took it for
 * a drain still evicting, and stopped every replica placed there again and again).
 */
export async function uncordonNode(cp: ControlPlane, name: string): Promise<Node> {
  const w = findNode(cp, name);
  if (w.cordoned || w.drain?.status === DrainStatus.DEADLINE_REACHED) {
    if (running.has(w)) finish(cp, w, DrainStatus.CANCELLED);
    else if (w.drain && w.drain.status !== DrainStatus.CANCELLED) w.drain = undefined;
    w.setCordoned(false);
    store(cp, w);
    reconcileJobsOn(cp, w);
    cp.wakePending();
  }
  await cp.committed();
  return nodeOf(w);
}

/** Cordons the worker and moves its tasks off within `deadlineMs` (DrainNode). */
export async function drainNode(
  cp: ControlPlane,
  name: string,
  deadline: { seconds: bigint; nanos: number } | undefined,
): Promise<Node> {
  const w = findNode(cp, name);
  let ms = DEFAULT_DRAIN_DEADLINE_MS;
  if (deadline) {
    if (deadline.seconds < 0n || deadline.nanos < 0) bad("deadline", "must not be negative");
    ms = durationMs({ $typeName: "google.protobuf.Duration", ...deadline });
    if (ms > LIMITS.durationMs) bad("deadline", "at most 24h");
  }
  if (w.drain?.status !== DrainStatus.DRAINING) {
    const now = cp.clock.now();
    w.drain = create(DrainSchema, {
      status: DrainStatus.DRAINING,
      startedAt: timestampLiteral(now),
      deadline: timestampLiteral(now + ms),
      tasksTotal: w.tasks.size,
      tasksLeft: w.tasks.size,
    });
    w.setCordoned(true);
    store(cp, w);
    start(cp, w);
  }
  await cp.committed();
  return nodeOf(w);
}

function bad(field: string, message: string): never {
  throw new ConnectError(`${field}: ${message}`, Code.InvalidArgument);
}

/** Starts (or, after a load, resumes) the work of a drain: its timer, its watch, a first step. */
function start(cp: ControlPlane, w: WorkerEntry): void {
  stopRunning(cp, w);
  const r: Running = { stop: new AbortController() };
  running.set(w, r);
  const drain = w.drain as Drain;
  if (drain.status === DrainStatus.DRAINING) {
    const at = drain.deadline ? timestampMs(drain.deadline) : cp.clock.now();
    r.timer = cp.timer(Math.max(0, at - cp.clock.now()), () => deadlineReached(cp, w));
  }
  // The worker's task set changes (a task left, or went): step again, no polling.
  const sub = cp.workerFeed.subscribe();
  void (async () => {
    try {
      while (!r.stop.signal.aborted && !cp.closed) {
        const keys = await sub.changed(r.stop.signal);
        if (keys.includes(w.id) && running.get(w) === r) step(cp, w);
      }
    } finally {
      sub.close();
    }
  })();
  reconcileJobsOn(cp, w);
  step(cp, w);
}

function stopRunning(cp: ControlPlane, w: WorkerEntry): void {
  const r = running.get(w);
  if (!r) return;
  cp.clearTimer(r.timer);
  r.stop.abort();
  running.delete(w);
}

function deadlineReached(cp: ControlPlane, w: WorkerEntry): void {
  if (w.drain?.status !== DrainStatus.DRAINING) return;
  w.drain = { ...w.drain, status: DrainStatus.DEADLINE_REACHED };
  store(cp, w);
  reconcileJobsOn(cp, w);
  step(cp, w);
}

/**
 * One step of a drain: moves the worker's other tasks (all of them once the deadline came,
 * else those another worker can take now), and ends the drain once nothing is left.
 */
function step(cp: ControlPlane, w: WorkerEntry): void {
  const drain = w.drain;
  if (
    !drain ||
    (drain.status !== DrainStatus.DRAINING && drain.status !== DrainStatus.DEADLINE_REACHED)
  ) {
    stopRunning(cp, w);
    return;
  }
  const force = drain.status === DrainStatus.DEADLINE_REACHED;
  const r = running.get(w);
  // One by one: nothing more moves while the last moved task is on its way (until the deadline).
  if (!force && r?.moving && !settled(r.moving, w)) return;
  if (r) r.moving = undefined;
  for (const id of [...w.tasks]) {
    const entry = cp.tasks.get(id);
    if (!entry || entry.group) continue; // a job's replica: its job moves it
    const task = entry.task;
    if (task.desiredState !== DesiredState.RUNNING) continue;
    if (task.state !== TaskState.SCHEDULED && task.state !== TaskState.RUNNING) continue;
    const avoid = new Set([w.id]);
    if (!force) {
      const plan = cp.placer.plan(taskRequest(entry, avoid), cp.workers.views(), cp.clock.now());
      if (plan.kind !== "place") continue; // waits for room, or for the deadline
    }
    // The old container stops here; the task starts again elsewhere (or waits, PENDING). A
    // restart it was waiting for (an unhealthy copy's) would restart the moved task again.
    cancelRestart(cp, entry);
    cp.assign(w, AssignmentAction.STOP, task);
    place(cp, entry, {
      avoid,
      placedMessage: (to) => `moved off draining worker ${w.label} to ${to.label}`,
      reasonPrefix: `moved off draining worker ${w.label}; `,
    });
    if (!force && r) {
      // One by one: the next moves when this one is ready elsewhere (or stops being moved).
      r.moving = entry;
      watchMove(cp, w, r, entry);
      break;
    }
  }
  if (w.tasks.size === 0) {
    finish(cp, w, force ? DrainStatus.DEADLINE_REACHED : DrainStatus.COMPLETE);
  }
}

/** Whether a moved task no longer holds the drain back: ready elsewhere, ended, or not wanted. */
function settled(entry: TaskEntry, from: WorkerEntry): boolean {
  const t = entry.task;
  if (t.desiredState !== DesiredState.RUNNING || isFinished(t.state)) return true;
  if (t.state === TaskState.PENDING) return true; // nowhere fits: waiting holds nothing back
  return t.workerId !== from.id && isReady(t);
}

/** Steps the drain again once the task it moved has settled (its events, not a poll). */
function watchMove(cp: ControlPlane, w: WorkerEntry, r: Running, entry: TaskEntry): void {
  const watcher = cp.hub.subscribe(64, entry.task.id);
  void (async () => {
    try {
      while (!r.stop.signal.aborted && !cp.closed && r.moving === entry) {
        const events = await watcher.take(r.stop.signal);
        // undefined: the watcher fell behind, which only a flood of changes does: step anyway.
        if (events === undefined || settled(entry, w)) break;
      }
    } finally {
      watcher.close();
    }
    if (!r.stop.signal.aborted && running.get(w) === r && r.moving === entry) step(cp, w);
  })();
}

function finish(cp: ControlPlane, w: WorkerEntry, status: DrainStatus): void {
  stopRunning(cp, w);
  if (!w.drain) return;
  w.drain = {
    ...w.drain,
    status,
    tasksLeft: w.tasks.size,
    finishedAt: timestampLiteral(cp.clock.now()),
  };
  store(cp, w);
}

/**
 * After a load: drains under way go on (their deadline as stored). Only on a cordoned
 * worker: an uncordoned one's record (a store from before uncordon cleared it) is over.
 */
export function resumeDrains(cp: ControlPlane): void {
  for (const w of cp.workers.all()) {
    const s = w.drain?.status;
    if (!w.cordoned) continue;
    if (s === DrainStatus.DRAINING || s === DrainStatus.DEADLINE_REACHED) start(cp, w);
  }
}
