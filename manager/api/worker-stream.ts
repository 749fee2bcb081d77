import { create, equals } from "@bufbuild/protobuf";
import { durationFromMs, TimestampSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import {
  DesiredState,
  HealthStatus,
  type Task,
  TaskEventType,
  TaskSchema,
  TaskState,
} from "../../gen/cube/v1/task_pb.js";
import {
  type EngineReport,
  EngineStatus,
  WorkerSchema,
  WorkerStatus,
} from "../../gen/cube/v1/worker_pb.js";
import {
  type Assignment,
  AssignmentAction,
  type ConnectRequest,
  type ConnectResponse,
  type Inventory,
  type InventoryItem,
  type Register,
} from "../../gen/cube/v1/worker_service_pb.js";
import type { TimerHandle } from "../../lib/clock.js";
import type { ControlPlane } from "../core/control-plane.js";
import { contactRestored, ended, reclaimed, stopped } from "../core/lifecycle.js";
import type { TaskEntry } from "../core/task-table.js";
import { WorkerConnection } from "../core/worker-connection.js";
import { WorkerEntry } from "../core/worker-table.js";
import { reconcile } from "../rules/reconcile.js";
import { formatMs } from "../rules/restart-policy.js";
import { cancelRestart, taskEnded, taskUnhealthy } from "../rules/restarts.js";
import {
  applyHealth,
  applyProgress,
  applyStopNotHeld,
  applyUpdate,
  workerItem,
  workerText,
} from "../rules/task-updates.js";
import { validateRegister } from "../rules/validate-register.js";
import { noteProgress, workerBack, workerDisconnected } from "../rules/worker-liveness.js";
import { workerStats } from "../rules/worker-stats.js";

/**
 * Serves one WorkerService.Connect stream: reads the worker's messages in their own loop and
 * yields what the manager queues for it, so both directions flow independently. The stream
 * ends when the worker goes away, falls silent past the heartbeat timeout, is replaced by a
 * newer stream of the same worker, or sends something that breaks the protocol.
 */
export async function* workerStream(
  cp: ControlPlane,
  requests: AsyncIterable<ConnectRequest>,
  ctx: HandlerContext,
): AsyncGenerator<ConnectResponse> {
  const conn = new WorkerConnection(cp.clock);
  const timer = heartbeat(cp, conn);
  (async () => {
    for await (const request of requests) {
      if (conn.ended) break;
      try {
        onMessage(cp, conn, request);
      } catch (error) {
        // A bug of ours must not take the manager down with it: log, drop the stream.
        cp.logger.error({ err: error, worker: conn.workerId }, "worker message failed");
        conn.end(ConnectError.from(error));
      }
    }
  })().then(
    () => streamEnded(cp, conn, "stream closed"),
    (error) => {
      // Refused input (another worker's id, an unknown field) ends the stream with its
      // status, so the worker hears why; a client that went away hears nothing anyway.
      const refused = ConnectError.from(error);
      conn.end(refused);
      streamEnded(cp, conn, refused.message);
    },
  );
  try {
    yield* conn.messages(ctx.signal);
  } finally {
    if (timer.current) cp.clock.clearTimeout(timer.current);
    streamEnded(cp, conn, "stream closed");
  }
}

/**
 * Handles one message up a worker stream (exported for in-process hollow workers in
 * benchmarks; the Connect handler is the normal way in).
 */
export function onMessage(cp: ControlPlane, conn: WorkerConnection, request: ConnectRequest): void {
  const m = request.message;
  if (m.case === "register") {
    register(cp, conn, m.value);
    return;
  }
  const worker = conn.workerId ? cp.workers.get(conn.workerId) : undefined;
  if (!worker) {
    conn.end(new ConnectError("send register first", Code.FailedPrecondition));
    return;
  }
  if (worker.connection !== conn) {
    conn.end(new ConnectError("this stream was replaced by a newer one", Code.Aborted));
    return;
  }
  worker.lastSeenMs = cp.clock.now();
  switch (m.case) {
    case "update":
      // Seqs go up by one per update, kept across restarts, and arrive in order: the next
      // new one is exactly lastUpdateSeq + 1. A jump is something no worker sends (a forged
      // 2^62 would make every later real update look like a replay): refused, never stored.
      if (m.value.seq > worker.lastUpdateSeq + 1n) {
        cp.logger.warn(
          {
            worker: worker.id,
            seq: String(m.value.seq),
            expected: String(worker.lastUpdateSeq + 1n),
          },
          "refused an update whose seq jumps",
        );
        conn.end(
          new ConnectError(
            `update seq ${m.value.seq} jumps past ${worker.lastUpdateSeq + 1n}: updates are numbered one by one`,
            Code.InvalidArgument,
          ),
        );
        return;
      }
      if (m.value.seq > worker.lastUpdateSeq) {
        worker.lastUpdateSeq = m.value.seq;
        cp.saveWorker(worker);
        applyUpdate(cp, worker, m.value);
      }
      ackUpdates(cp, worker);
      break;
    case "inventory":
      onInventory(cp, worker, m.value);
      break;
    case "assignmentAck":
      cp.acknowledged(worker, m.value.taskId, m.value.generation, m.value.action);
      if (m.value.notHeld && m.value.action === AssignmentAction.STOP) {
        applyStopNotHeld(cp, worker, m.value.taskId, m.value.generation);
      }
      break;
    case "health":
      applyHealth(cp, worker, m.value);
      break;
    case "progress":
      applyProgress(cp, worker, m.value);
      break;
    case "stats": {
      // Its own node and the tasks it holds only, numbers clamped (rules/worker-stats.ts).
      const kept = workerStats(worker, m.value);
      if (kept) {
        worker.setMetrics(kept.node, kept.tasks);
        cp.metricsFeed.notify(worker.id);
        cp.workerFeed.notify(worker.id);
      }
      break;
    }
    case "leaving":
      // Its stream ends next; the grace it then gets depends on this.
      worker.leaving = { ...m.value, reason: workerText(m.value.reason) };
      cp.logger.info(
        {
          worker: worker.id,
          restarting: m.value.restarting,
          reason: worker.leaving.reason || undefined,
        },
        m.value.restarting ? "worker restarting" : "worker leaving",
      );
      break;
    case "engine":
      onEngine(cp, worker, m.value);
      break;
    case "batch":
      for (const inner of m.value.messages) {
        const kind = inner.message.case;
        if (kind === "register" || kind === "batch") {
          conn.end(new ConnectError(`a batch may not hold a ${kind}`, Code.InvalidArgument));
          return;
        }
        onMessage(cp, conn, inner);
        if (conn.ended) return;
      }
      break;
    default:
      break; // heartbeat, or a message kind this manager does not know yet
  }
}

function register(cp: ControlPlane, conn: WorkerConnection, reg: Register): void {
  if (conn.workerId) {
    conn.end(new ConnectError("register sent twice on one stream", Code.FailedPrecondition));
    return;
  }
  try {
    validateRegister(reg);
  } catch (error) {
    conn.end(error as ConnectError);
    return;
  }
  const now = cp.clock.now();
  let worker = cp.workers.get(reg.workerId);
  // A worker seen before may come back holding copies that must be reconciled before anything
  // is placed there; a new one holds nothing the manager knows of.
  const returning = worker !== undefined;
  const keepReturning = worker && agentRestarted(cp, worker, reg, now);
  // A new record, without the down_since of a DOWN one: READY again, node GC forgets it.
  const record = create(WorkerSchema, {
    id: reg.workerId,
    name: reg.name || reg.workerId,
    address: reg.address,
    capacity: reg.capacity,
    labels: reg.labels,
    version: reg.version,
    registeredAt: worker?.record.registeredAt ?? timestampFromMs(now),
    agentStartedAt: reg.agentStartedAt,
  });
  if (!worker) {
    worker = new WorkerEntry(record, 0n, WorkerStatus.READY);
    cp.workers.add(worker);
  } else {
    const old = worker.connection;
    if (old && old !== conn) {
      old.end(new ConnectError("replaced by a newer stream of the same worker", Code.Aborted));
    }
    worker.setRecord(record);
  }
  workerBack(cp, worker);
  // A restarted agent whose first stream ended before its inventory arrived is still the
  // restarted one on its next stream (the record already holds its new agent_started_at).
  worker.keepReturning = keepReturning ?? worker.keepReturning;
  const wasDown = worker.status === WorkerStatus.DOWN;
  worker.connection = conn;
  // Acks are per stream: a duplicate replayed on this one is acknowledged again.
  worker.ackedSeq = 0n;
  // So is the window: what went down the old stream is resent by the reconcile if missing.
  worker.resetWindow();
  worker.lastSeenMs = now;
  // No new task until its inventory is reconciled (onInventory): what it holds comes first.
  worker.setSynced(!returning);
  worker.setStatus(WorkerStatus.READY);
  worker.setEngine(reg.engine && engineReport(reg.engine));
  worker.callSecret = reg.callSecret;
  worker.registeredSince = true;
  conn.workerId = worker.id;
  conn.acceptsBatch = reg.acceptsBatch;
  cp.saveWorker(worker);
  const lastUpdateSeq = worker.lastUpdateSeq;
  cp.afterCommit(() => {
    conn.send({
      case: "registered",
      value: {
        $typeName: "cube.v1.Registered",
        workerId: reg.workerId,
        heartbeatInterval: durationFromMs(cp.options.heartbeatIntervalMs),
        heartbeatTimeout: durationFromMs(cp.options.heartbeatTimeoutMs),
        lastUpdateSeq,
      },
    });
    conn.registered = true;
  });
  cp.workerFeed.notify(worker.id);
  cp.logger.info(
    {
      worker: worker.id,
      workerName: record.name,
      address: record.address,
      wasDown,
      engine: reg.engine ? EngineStatus[reg.engine.status] : undefined,
    },
    "worker READY",
  );
  cp.wakePending();
}

/**
 * Why a returning worker's running copies win over replacements, when they do: its agent
 * restarted (agent_started_at changed; a crash, kill -9, an upgrade) and is back within the
 * restart grace of the manager last hearing from it. Its containers ran on under the engine
 * all along, so keeping them restarts nothing, while keeping the replacements would restart
 * every task the agent held. A worker that returns with the same agent (a partition, a
 * freeze) was out of reach with its containers: a running replacement wins then.
 */
function agentRestarted(
  cp: ControlPlane,
  worker: WorkerEntry,
  reg: Register,
  now: number,
): string | undefined {
  const before = worker.record.agentStartedAt;
  const after = reg.agentStartedAt;
  if (!before || !after || equals(TimestampSchema, before, after)) return undefined;
  const awayMs = now - worker.lastSeenMs;
  if (worker.lastSeenMs === 0 || awayMs > cp.options.restartGraceMs) return undefined;
  return `its agent restarted and was back within ${formatMs(awayMs)}, its containers running all along`;
}

/** Acknowledges, once durable, every update stored so far (cumulative; one ack per commit). */
function ackUpdates(cp: ControlPlane, worker: WorkerEntry): void {
  const seq = worker.lastUpdateSeq;
  cp.afterCommit(() => {
    const conn = worker.connection;
    if (!conn?.registered || seq <= worker.ackedSeq) return;
    worker.ackedSeq = seq;
    conn.send({ case: "updateAck", value: { $typeName: "cube.v1.UpdateAck", seq } });
  });
}

/**
 * Reconciles what the worker holds with what the manager wants (the plan is
 * {@link reconcile}'s): sent after every (re)connect, and again when the worker's engine
 * came back.
 */
function onInventory(cp: ControlPlane, worker: WorkerEntry, sent: Inventory): void {
  // Container ids and ports may become the task's (restore, reclaim): kept as worker text.
  const inventory = { ...sent, items: sent.items.map(workerItem) };
  const actions = reconcile(
    worker.id,
    inventory.items,
    (id) => cp.tasks.get(id)?.task,
    worker.tasks,
    worker.keepReturning,
    (id) => cp.tasks.get(id)?.movedOff?.get(worker.id),
  );
  // Only the inventory right after the agent's return: a later one (its engine came back)
  // follows the usual rule.
  worker.keepReturning = undefined;
  const held = new Set(inventory.items.map((i) => i.taskId));
  // What it held when it went DOWN is settled by this reconcile: kept, or stopped below.
  for (const id of held) {
    const entry = cp.tasks.get(id);
    if (entry) cp.settleMovedOff(entry, worker.id);
  }
  for (const [id, a] of worker.unacked) {
    if (a.action === AssignmentAction.STOP && !held.has(id)) worker.settle(id);
  }
  for (const id of actions.current) {
    const a = worker.unacked.get(id);
    if (
      a?.action === AssignmentAction.RUN &&
      a.task?.generation === cp.tasks.get(id)?.task.generation
    ) {
      worker.settle(id);
    }
  }
  for (const item of actions.restore) restore(cp, worker, item);
  for (const decision of actions.reclaim) reclaim(cp, worker, decision.item, decision.because);
  const duplicates = new Map(actions.duplicates.map((d) => [d.item, d.because]));
  const strangers = new Set(actions.strangers);
  for (const item of actions.stop) {
    const entry = cp.tasks.get(item.taskId);
    const task = entry?.task ?? create(TaskSchema, { id: item.taskId });
    const because = duplicates.get(item);
    if (strangers.has(item)) {
      // Nothing of the task changes: its record, not the worker's word, says where it runs.
      cp.logger.warn(
        {
          task: item.taskId,
          worker: worker.id,
          generation: Number(item.generation),
          placed: task.workerId || undefined,
        },
        "reconcile: the worker holds a running copy of a task never moved off it at that generation: stopping it",
      );
    } else if (entry && because !== undefined) {
      const message = `stopping the copy on ${worker.label} (generation ${item.generation}) that came back: ${because} on ${placeLabel(cp, entry.task)}`;
      cp.change(entry, {}, TaskEventType.COPY_STOPPED, message);
      cp.logger.info(
        { task: item.taskId, worker: worker.id, generation: Number(item.generation) },
        `reconcile: ${message}`,
      );
    } else {
      cp.logger.info(
        { task: item.taskId, worker: worker.id, generation: Number(item.generation) },
        "reconcile: stopping a copy that should not run",
      );
    }
    cp.assign(worker, AssignmentAction.STOP, { ...task, generation: item.generation });
  }
  for (const id of actions.run) {
    const entry = cp.tasks.get(id);
    if (!entry) continue;
    if (entry.task.state === TaskState.UNKNOWN) {
      // Back, but without it (it never started): it is sent again.
      cp.change(
        entry,
        contactRestored(TaskState.SCHEDULED),
        TaskEventType.STATE_CHANGED,
        `contact with ${worker.label} restored; it does not hold the task: sending it again`,
      );
    }
    cp.logger.info({ task: id, worker: worker.id }, "reconcile: sending a missing task again");
    cp.assign(worker, AssignmentAction.RUN, entry.task);
  }
  // Stopped while the worker was away, and it holds nothing of them: nothing left to stop.
  for (const id of [...worker.tasks]) {
    const entry = cp.tasks.get(id);
    if (!entry || held.has(id) || entry.task.desiredState !== DesiredState.STOPPED) continue;
    worker.settle(id);
    cp.change(
      entry,
      stopped(cp.clock.now()),
      TaskEventType.STATE_CHANGED,
      "stopped (its worker did not hold it)",
    );
  }
  cp.pumpAssignments(worker);
  if (!worker.synced) {
    worker.setSynced(true);
    cp.workerFeed.notify(worker.id);
    cp.wakePending();
  }
}

/** Where a task is placed, for people: "wb (generation 2)", or "no worker" while PENDING. */
function placeLabel(cp: ControlPlane, task: Task): string {
  if (!task.workerId) return "no worker";
  const w = cp.workers.get(task.workerId);
  return `${w?.label ?? task.workerId} (generation ${task.generation})`;
}

/** An UNKNOWN task whose worker is back holding it at its generation: its state is known again. */
function restore(cp: ControlPlane, worker: WorkerEntry, item: InventoryItem): void {
  const entry = cp.tasks.get(item.taskId);
  if (!entry || entry.task.state !== TaskState.UNKNOWN) return;
  if (item.state === TaskState.SCHEDULED || item.state === TaskState.RUNNING) {
    const after = cp.change(
      entry,
      contactRestored(item.state, item),
      TaskEventType.STATE_CHANGED,
      `contact with ${worker.label} restored`,
    );
    // Its restart was cancelled when contact was lost: decide it again.
    if (after.state === TaskState.RUNNING && after.health === HealthStatus.UNHEALTHY) {
      taskUnhealthy(cp, entry, worker, "unhealthy before contact was lost");
    }
    return;
  }
  // Ended while contact was lost, and no update said so (one would have arrived first).
  const state = item.state === TaskState.COMPLETED ? TaskState.COMPLETED : TaskState.FAILED;
  const reason = `ended while contact with ${worker.label} was lost`;
  taskEnded(
    cp,
    entry,
    ended(state, reason, cp.clock.now()),
    state === TaskState.FAILED ? "failed" : "completed",
  );
}

/**
 * A worker came back still running a copy of a task that was replaced meanwhile, and the
 * replacement does not run: the task points at the returning copy again, and the
 * replacement (if one was placed) is stopped. Exactly one copy survives.
 */
function reclaim(cp: ControlPlane, worker: WorkerEntry, item: InventoryItem, because: string) {
  const entry: TaskEntry | undefined = cp.tasks.get(item.taskId);
  if (!entry) return;
  const before = entry.task;
  const replacement = before.workerId ? cp.workers.get(before.workerId) : undefined;
  const stopping = replacement ? `; stopping the replacement on ${placeLabel(cp, before)}` : "";
  const message = `kept the copy on ${worker.label} (generation ${item.generation}) that came back: ${because}${stopping}`;
  cancelRestart(cp, entry);
  cp.change(
    entry,
    reclaimed(worker.id, item.generation, item),
    TaskEventType.STATE_CHANGED,
    message,
  );
  cp.change(
    entry,
    contactRestored(TaskState.RUNNING),
    TaskEventType.STATE_CHANGED,
    `running on ${worker.label}`,
  );
  cp.logger.info(
    { task: item.taskId, worker: worker.id, generation: Number(item.generation) },
    `reconcile: ${message}`,
  );
  worker.settle(item.taskId);
  // The replacement goes, starting, running or ended (an ended one's container is kept for
  // its logs until a STOP): its worker stops whatever generation of the task it holds.
  if (replacement) cp.assign(replacement, AssignmentAction.STOP, before);
}

/** What a worker says of its engine, its reason (the engine's or the OS's words) as {@link workerText} keeps it. */
function engineReport(sent: EngineReport): EngineReport {
  const reason = workerText(sent.reason);
  return reason === sent.reason ? sent : { ...sent, reason };
}

/** The worker's container engine went away or came back. */
function onEngine(cp: ControlPlane, worker: WorkerEntry, sent: EngineReport): void {
  const report = engineReport(sent);
  const was = worker.engine?.status;
  worker.setEngine(report);
  if (was === report.status) return;
  cp.workerFeed.notify(worker.id);
  const up = report.status === EngineStatus.UP;
  const fields = { worker: worker.id, workerName: worker.record.name, reason: report.reason };
  if (up) cp.logger.info(fields, "worker's container engine is back");
  else cp.logger.warn(fields, "worker's container engine is DOWN: no new tasks go there");
  if (up) cp.wakePending();
}

function streamEnded(cp: ControlPlane, conn: WorkerConnection, why: string): void {
  conn.end();
  const worker = conn.workerId ? cp.workers.get(conn.workerId) : undefined;
  if (!worker || worker.connection !== conn) return;
  worker.connection = undefined;
  if (!cp.closed) workerDisconnected(cp, worker, why);
}

/**
 * One timer per stream, re-armed every heartbeat interval (sooner when a silent worker's
 * timeout runs out before the next one): a heartbeat goes down when
 * nothing else did; assignments unacknowledged for a whole resend period go down again;
 * and a worker silent past the heartbeat timeout — by the manager's own running time — has
 * its stream closed and is DISCONNECTED.
 */
function heartbeat(cp: ControlPlane, conn: WorkerConnection): { current?: TimerHandle } {
  const { heartbeatIntervalMs: interval, heartbeatTimeoutMs: timeout } = cp.options;
  const ref: { current?: TimerHandle } = {};
  const started = cp.clock.now();
  let lastResendCheck = started;
  const tick = () => {
    if (conn.ended || cp.closed) return;
    // A stall of the manager gives the worker a fresh silence clock before it is judged.
    noteProgress(cp);
    const now = cp.clock.now();
    const worker = conn.workerId ? cp.workers.get(conn.workerId) : undefined;
    if (!worker) {
      if (now - started > timeout) {
        conn.end(new ConnectError("no register message in time", Code.DeadlineExceeded));
        return;
      }
    } else if (worker.connection === conn && now - worker.lastSeenMs > timeout) {
      const why = `silent for ${now - worker.lastSeenMs}ms`;
      worker.connection = undefined;
      conn.end(new ConnectError(`worker ${why}: closing its stream`, Code.DeadlineExceeded));
      workerDisconnected(cp, worker, why);
      return;
    } else if (worker.connection === conn && conn.registered) {
      if (now - lastResendCheck >= cp.options.assignmentResendMs) {
        lastResendCheck = now;
        resendUnacked(cp, worker, conn);
      }
      if (conn.idle && now - conn.lastSentMs >= interval) {
        // Only when nothing is queued: a worker that stopped reading gets no pile of heartbeats.
        conn.send({
          case: "heartbeat",
          value: { $typeName: "cube.v1.Heartbeat", time: timestampFromMs(now) },
        });
      }
    }
    ref.current = cp.clock.setTimeout(tick, nextTick());
  };
  // Every interval, and when a silent worker's timeout runs out: judged then, not up to an
  // interval later (a partition took the timeout plus half an interval on average).
  const nextTick = (): number => {
    const worker = conn.workerId ? cp.workers.get(conn.workerId) : undefined;
    if (!worker || worker.connection !== conn) return interval;
    const due = worker.lastSeenMs + timeout + 1 - cp.clock.now();
    return Math.max(1, Math.min(interval, due));
  };
  ref.current = cp.clock.setTimeout(tick, interval);
  return ref;
}

/**
 * Sends again every assignment in flight that was already unacknowledged at the previous
 * check (the same assignment: a newer one replaced in between has not waited yet). A
 * worker that could not apply one — its engine was down, its store failed — gets it again
 * without waiting for a reconnect; applying one twice is harmless.
 */
function resendUnacked(cp: ControlPlane, worker: WorkerEntry, conn: WorkerConnection): void {
  const marks = new Map<string, Assignment>();
  let resent = 0;
  for (const id of worker.inFlight) {
    const a = worker.unacked.get(id);
    if (!a) continue;
    if (worker.resendMarks.get(id) === a) {
      conn.send({ case: "assignment", value: a });
      resent++;
    }
    marks.set(id, a);
  }
  worker.resendMarks = marks;
  if (resent > 0) {
    cp.logger.info(
      { worker: worker.id, resent, afterMs: cp.options.assignmentResendMs },
      "sent again assignments the worker has not acknowledged",
    );
  }
}
