import { ConnectError } from "@connectrpc/connect";
import { DesiredState, TaskEventType } from "../../gen/cube/v1/task_pb.js";
import { WorkerStatus } from "../../gen/cube/v1/worker_pb.js";
import type { ControlPlane } from "../core/control-plane.js";
import { stopped } from "../core/lifecycle.js";
import type { WorkerEntry } from "../core/worker-table.js";
import { place } from "./placing.js";
import { formatMs } from "./restart-policy.js";
import { cancelRestart } from "./restarts.js";

/** A worker's stream ended: DISCONNECTED now, DOWN unless it is back within the grace period. */
export function workerDisconnected(cp: ControlPlane, worker: WorkerEntry, why: string): void {
  if (worker.status !== WorkerStatus.READY) return;
  worker.setStatus(WorkerStatus.DISCONNECTED);
  cp.workerFeed.notify(worker.id);
  cp.logger.warn({ worker: worker.id, workerName: worker.record.name, why }, "worker DISCONNECTED");
  cp.clearTimer(worker.downTimer);
  worker.downTimer = cp.timer(cp.options.downGraceMs, () =>
    workerDown(cp, worker, `no reconnect within ${formatMs(cp.options.downGraceMs)}`),
  );
}

/**
 * A worker is gone: DOWN, and each of its unfinished tasks moves to another worker with the
 * next generation (PENDING when none fits); tasks meant to stop are COMPLETED "stopped".
 * When the worker comes back, the reconcile of its inventory stops the copies it still runs.
 */
export function workerDown(cp: ControlPlane, worker: WorkerEntry, why: string): void {
  cp.clearTimer(worker.downTimer);
  worker.downTimer = undefined;
  if (worker.status === WorkerStatus.DOWN) return;
  const conn = worker.connection;
  worker.connection = undefined;
  conn?.end(new ConnectError(`worker marked DOWN: ${why}`));
  worker.setStatus(WorkerStatus.DOWN);
  worker.unacked.clear();
  worker.resetWindow();
  worker.taskMetrics.clear();
  cp.workerFeed.notify(worker.id);
  cp.logger.warn(
    { worker: worker.id, workerName: worker.record.name, why, tasks: worker.tasks.size },
    "worker DOWN",
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
    place(cp, entry, {
      avoid,
      restart: true,
      placedMessage: (w) => `moved from ${worker.label} (DOWN) to ${w.label}`,
      reasonPrefix: `worker ${worker.label} is DOWN; `,
    });
  }
}

/** After a load: every known worker gets the start-up grace to reconnect before it is DOWN. */
export function startupGrace(cp: ControlPlane): void {
  const grace = cp.options.startupGraceMs;
  for (const worker of cp.workers.all()) {
    worker.downTimer = cp.timer(grace, () =>
      workerDown(cp, worker, `did not reconnect within ${formatMs(grace)} of the manager's start`),
    );
  }
}
