import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { type TaskLogsResponse, TaskService } from "../../gen/cube/v1/task_service_pb.js";
import { WorkerStatus } from "../../gen/cube/v1/worker_pb.js";
import { sinceProblem } from "../../lib/log-time.js";
import { grpcTransport } from "../../lib/rpc/client.js";
import { isFinished, stateName } from "../../lib/task-state.js";
import type { ControlPlane } from "../core/control-plane.js";
import type { WorkerEntry } from "../core/worker-table.js";
import { findTask } from "../rules/task-ops.js";
import type { ClusterTls } from "./cluster-tls.js";

/**
 * One transport per worker address (and, over TLS, per worker and manager certificate):
 * HTTP/2 sessions are reused across log requests.
 */
const transports = new Map<string, Transport>();

function transportTo(
  address: string,
  workerId: string,
  secret: string,
  tls: ClusterTls | undefined,
): Transport {
  // Over TLS the manager shows its own certificate, and the worker's must name the worker;
  // in plaintext, the secret the worker gave at its registration.
  const key = tls ? `${address} ${workerId} ${tls.generation}` : `${address} ${secret}`;
  let t = transports.get(key);
  if (!t) {
    t = grpcTransport(
      address,
      tls ? { tls: tls.clientTlsFor(workerId) } : secret ? { token: secret } : {},
    );
    transports.set(key, t);
  }
  return t;
}

/**
 * Streams a task's container output from the worker that runs it (its own
 * TaskService.TaskLogs at the address it registered). INVALID_ARGUMENT for a `since` no
 * clock could mean (the worker checks it against its own clock too); FAILED_PRECONDITION
 * when the task has no container (yet, or at all: it ended before one was made); NOT_FOUND
 * when it ended and the worker removed its container; UNAVAILABLE naming the worker when it is DOWN or
 * cannot be reached (a message that starts with "worker ").
 */
export async function* proxyTaskLogs(
  cp: ControlPlane,
  request: { id: string; follow: boolean; tail: number; since?: Timestamp },
  signal: AbortSignal,
  tls?: ClusterTls,
): AsyncGenerator<TaskLogsResponse> {
  // Not against this clock: the worker's engine stamps the output, and the two may differ.
  const problem = request.since && sinceProblem(request.since);
  if (problem) throw new ConnectError(problem, Code.InvalidArgument);
  const task = findTask(cp, request.id).task;
  const ended = isFinished(task.state)
    ? `ended ${stateName(task.state)}${task.reason ? ` (${task.reason})` : ""}`
    : undefined;
  if (!task.workerId || !task.containerId) {
    throw new ConnectError(
      ended
        ? `task "${task.id}" ${ended} without a container: it has no logs`
        : `task "${task.id}" has no container yet (it is ${task.workerId ? "being started" : "not placed"})`,
      Code.FailedPrecondition,
    );
  }
  const worker = cp.workers.get(task.workerId);
  if (!worker?.record.address) {
    throw new ConnectError(
      `worker ${task.workerId} of task "${task.id}" has no known address`,
      Code.FailedPrecondition,
    );
  }
  const name = `worker ${worker.label} at ${worker.record.address}`;
  if (worker.status === WorkerStatus.DOWN) {
    throw new ConnectError(`${name} is DOWN: its logs cannot be read`, Code.Unavailable);
  }
  // Without TLS the worker answers only the secret it sends when it registers: a manager
  // restarted a moment ago knows its address (stored) but not the secret yet (memory). A
  // worker redials at once, so its registration is waited for a little.
  if (!tls && !worker.registeredSince) await registration(cp, worker, signal);
  if (!tls && !worker.registeredSince) {
    throw new ConnectError(
      `${name} has not registered with this manager since it started: its logs cannot be read yet`,
      Code.Unavailable,
    );
  }
  const client = createClient(
    TaskService,
    transportTo(worker.record.address, task.workerId, worker.callSecret, tls),
  );
  try {
    for await (const chunk of client.taskLogs(
      { id: task.id, follow: request.follow, tail: request.tail, since: request.since },
      { signal },
    )) {
      yield chunk;
    }
  } catch (error) {
    if (signal.aborted) return;
    const e = ConnectError.from(error);
    // The worker removes an ended task's container when it is stopped or replaced, and
    // forgets the task: its words ("not on this worker") would puzzle.
    if (ended && e.code === Code.NotFound) {
      throw new ConnectError(
        `task "${task.id}" ${ended} and its container was removed: its logs went with it`,
        Code.NotFound,
      );
    }
    // A worker that answered (NOT_FOUND, FAILED_PRECONDITION...) speaks for itself.
    const reached = ![
      Code.Unavailable,
      Code.Unknown,
      Code.Canceled,
      Code.Aborted,
      Code.Internal,
    ].includes(e.code);
    if (reached) throw e;
    throw new ConnectError(`${name} is unreachable: ${e.rawMessage}`, Code.Unavailable);
  }
}

/** How long a log request waits for a known worker to register again (manager restarted). */
const REGISTRATION_WAIT_MS = 5000;

/** Resolves once `worker` has registered, {@link REGISTRATION_WAIT_MS} passed, or `signal` aborted. */
async function registration(cp: ControlPlane, worker: WorkerEntry, signal: AbortSignal) {
  const sub = cp.workerFeed.subscribe();
  const waited = AbortSignal.any([signal, AbortSignal.timeout(REGISTRATION_WAIT_MS)]);
  try {
    while (!worker.registeredSince && !waited.aborted) await sub.changed(waited);
  } finally {
    sub.close();
  }
}
