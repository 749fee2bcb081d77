import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { DesiredState, TaskEventType, TaskSchema } from "../../gen/cube/v1/task_pb.js";
import { WorkerSchema, WorkerStatus } from "../../gen/cube/v1/worker_pb.js";
import {
  AssignmentAction,
  type ConnectRequest,
  type ConnectResponse,
  type Inventory,
  type Register,
} from "../../gen/cube/v1/worker_service_pb.js";
import type { TimerHandle } from "../../lib/clock.js";
import type { ControlPlane } from "../core/control-plane.js";
import { stopped } from "../core/lifecycle.js";
import { WorkerConnection } from "../core/worker-connection.js";
import { WorkerEntry } from "../core/worker-table.js";
import { reconcile } from "../rules/reconcile.js";
import { applyHealth, applyProgress, applyUpdate } from "../rules/task-updates.js";
import { workerDisconnected, workerDown } from "../rules/worker-liveness.js";

const WORKER_ID = /^[A-Za-z0-9._-]{1,128}$/;

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
    (error) => streamEnded(cp, conn, ConnectError.from(error).message),
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
      break;
    case "health":
      applyHealth(cp, worker, m.value);
      break;
    case "progress":
      applyProgress(cp, worker, m.value);
      break;
    case "stats":
      if (m.value.node) {
        worker.setMetrics({ ...m.value.node, workerId: worker.id }, m.value.tasks);
        cp.metricsFeed.notify(worker.id);
        cp.workerFeed.notify(worker.id);
      }
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
  if (!WORKER_ID.test(reg.workerId)) {
    conn.end(
      new ConnectError(
        "register.worker_id: 1-128 letters, digits, '-', '_' or '.'",
        Code.InvalidArgument,
      ),
    );
    return;
  }
  const now = cp.clock.now();
  let worker = cp.workers.get(reg.workerId);
  const record = create(WorkerSchema, {
    id: reg.workerId,
    name: reg.name || reg.workerId,
    address: reg.address,
    capacity: reg.capacity,
    labels: reg.labels,
    version: reg.version,
    registeredAt: worker?.record.registeredAt ?? timestampFromMs(now),
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
  cp.clearTimer(worker.downTimer);
  worker.downTimer = undefined;
  const wasDown = worker.status === WorkerStatus.DOWN;
  worker.connection = conn;
  // Acks are per stream: a duplicate replayed on this one is acknowledged again.
  worker.ackedSeq = 0n;
  // So is the window: what went down the old stream is resent by the reconcile if missing.
  worker.resetWindow();
  worker.lastSeenMs = now;
  worker.setStatus(WorkerStatus.READY);
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
    { worker: worker.id, workerName: record.name, address: record.address, wasDown },
    "worker READY",
  );
  cp.wakePending();
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

/** Reconciles what the worker holds with what the manager wants (see {@link reconcile}). */
function onInventory(cp: ControlPlane, worker: WorkerEntry, inventory: Inventory): void {
  const actions = reconcile(
    worker.id,
    inventory.items,
    (id) => cp.tasks.get(id)?.task,
    worker.tasks,
  );
  const held = new Set(inventory.items.map((i) => i.taskId));
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
  for (const item of actions.stop) {
    const task = cp.tasks.get(item.taskId)?.task ?? create(TaskSchema, { id: item.taskId });
    cp.logger.info(
      { task: item.taskId, worker: worker.id, generation: Number(item.generation) },
      "reconcile: stopping a copy that should not run",
    );
    cp.assign(worker, AssignmentAction.STOP, { ...task, generation: item.generation });
  }
  for (const id of actions.run) {
    const task = cp.tasks.get(id)?.task;
    if (!task) continue;
    cp.logger.info({ task: id, worker: worker.id }, "reconcile: sending a missing task again");
    cp.assign(worker, AssignmentAction.RUN, task);
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
}

function streamEnded(cp: ControlPlane, conn: WorkerConnection, why: string): void {
  conn.end();
  const worker = conn.workerId ? cp.workers.get(conn.workerId) : undefined;
  if (!worker || worker.connection !== conn) return;
  worker.connection = undefined;
  if (!cp.closed) workerDisconnected(cp, worker, why);
}

/**
 * One timer per stream, re-armed every heartbeat interval: a heartbeat goes down when
 * nothing else did, and a worker silent past the heartbeat timeout is DOWN at once.
 */
function heartbeat(cp: ControlPlane, conn: WorkerConnection): { current?: TimerHandle } {
  const { heartbeatIntervalMs: interval, heartbeatTimeoutMs: timeout } = cp.options;
  const ref: { current?: TimerHandle } = {};
  const started = cp.clock.now();
  const tick = () => {
    if (conn.ended || cp.closed) return;
    const now = cp.clock.now();
    const worker = conn.workerId ? cp.workers.get(conn.workerId) : undefined;
    if (!worker) {
      if (now - started > timeout) {
        conn.end(new ConnectError("no register message in time", Code.DeadlineExceeded));
        return;
      }
    } else if (worker.connection === conn && now - worker.lastSeenMs > timeout) {
      workerDown(cp, worker, `silent for ${now - worker.lastSeenMs}ms`);
      return;
    } else if (conn.registered && conn.idle && now - conn.lastSentMs >= interval) {
      // Only when nothing is queued: a worker that stopped reading gets no pile of heartbeats.
      conn.send({
        case: "heartbeat",
        value: { $typeName: "cube.v1.Heartbeat", time: timestampFromMs(now) },
      });
    }
    ref.current = cp.clock.setTimeout(tick, interval);
  };
  ref.current = cp.clock.setTimeout(tick, interval);
  return ref;
}
