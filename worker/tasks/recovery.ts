import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { HealthStatus, type Task, TaskState } from "../../gen/cube/v1/task_pb.js";
import type { Logger } from "../../lib/logger.js";
import type { Driver } from "./driver.js";
import type { RecoveryAction } from "./recovery-plan.js";
import type { TaskLedger } from "./task-ledger.js";
import { withChanges } from "./task-record.js";

/** What carrying out a recovery plan needs from the task runner. */
export interface RecoveryContext {
  readonly ledger: TaskLedger;
  readonly driver: Driver;
  readonly logger: Logger;
  /** Stop grace for containers that must go. */
  readonly graceMs: number;
  /** Stops and removes the running container of a task recorded as ended; never throws. */
  removeStray(task: Task, containerId: string): Promise<void>;
  /** Ids of the foreign containers already warned about: each is named once. */
  readonly foreignWarned: Set<string>;
  /** Watches a re-adopted container again (its exit, its health check). */
  follow(task: Task): void;
  /** Removes the task's container and reports it COMPLETED "stopped". */
  finishStop(task: Task): Promise<void>;
}

/**
 * Carries out one step of {@link planRecovery}'s plan: re-adopt, report an exit or a
 * vanished container, forget a start that never happened, finish a stop, remove a
 * stale container, or name a foreign look-alike (once). Never starts a container.
 */
export async function applyRecovery(action: RecoveryAction, ctx: RecoveryContext): Promise<void> {
  const { ledger, driver } = ctx;
  switch (action.kind) {
    case "remove":
      ctx.logger.info({ task: action.container.taskId }, "removing a stale container");
      await driver.stop(action.container.containerId, ctx.graceMs);
      await driver.destroy(action.container.containerId);
      return;
    case "foreign": {
      const { containerId, name, taskId, generation } = action.container;
      if (ctx.foreignWarned.has(containerId)) return;
      ctx.foreignWarned.add(containerId);
      ctx.logger.warn(
        {
          container: name ?? containerId,
          containerId,
          task: taskId,
          generation: Number(generation),
        },
        `container ${name ?? containerId} carries cube's labels for task ${taskId} but cube did not make it: leaving it alone`,
      );
      return;
    }
    case "keep":
      ledger.restore(action.task);
      return;
    case "stray":
      if (!ledger.get(action.task.id)) ledger.restore(action.task);
      return ctx.removeStray(action.task, action.container.containerId);
    case "forget":
      if (action.container) await driver.destroy(action.container.containerId);
      await ledger.forget(action.task.id);
      return;
    case "finish-stop":
      return ctx.finishStop(
        withChanges(action.task, { containerId: action.container?.containerId ?? "" }),
      );
    case "vanished":
      return ledger.fail(
        action.task,
        `container ${action.task.containerId.slice(0, 12)} disappeared while the worker was down`,
      );
    case "exited": {
      const { container } = action;
      const code = container.exitCode ?? -1;
      return ledger.report(
        withChanges(action.task, {
          state: code === 0 ? TaskState.COMPLETED : TaskState.FAILED,
          containerId: container.containerId,
          ports: container.ports,
          exitCode: code,
          reason: container.error || `exit code ${code} (while the worker was down)`,
          finishedAt: timestampFromMs(container.finishedAtMs ?? Date.now()),
        }),
      );
    }
    case "adopt": {
      const { container, task } = action;
      const adopted = withChanges(task, {
        state: TaskState.RUNNING,
        containerId: container.containerId,
        ports: container.ports,
        health: HealthStatus.UNSPECIFIED,
      });
      // A record still SCHEDULED means RUNNING was never reported: report it now.
      if (task.state !== TaskState.RUNNING) await ledger.report(adopted);
      else await ledger.save(adopted);
      ctx.logger.info({ task: task.id, generation: Number(task.generation) }, "task re-adopted");
      ctx.follow(adopted);
      return;
    }
  }
}
