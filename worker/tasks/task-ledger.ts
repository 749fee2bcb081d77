import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { HealthStatus, type Task, TaskState } from "../../gen/cube/v1/task_pb.js";
import {
  type HealthReport,
  HealthReportSchema,
  type InventoryItem,
} from "../../gen/cube/v1/worker_service_pb.js";
import type { Logger } from "../../lib/logger.js";
import { scrubSecrets } from "../../lib/redact.js";
import { stateName } from "../../lib/task-state.js";
import type { WorkerStore } from "../store/worker-store.js";
import type { Outbox } from "../stream/outbox.js";
import { inventoryItemOf, updateOf, withChanges } from "./task-record.js";

/**
 * The worker's task records, in memory and in LevelDB together. A state change is
 * {@link report}ed: stored with its update in one synced batch (so the record and the
 * update the manager will get never disagree after a crash), then logged — one line
 * per state change, with the task id and generation.
 */
export class TaskLedger {
  readonly #tasks = new Map<string, Task>();
  readonly #store: WorkerStore;
  readonly #outbox: Outbox;
  readonly #log: Logger;

  constructor(store: WorkerStore, outbox: Outbox, logger: Logger) {
    this.#store = store;
    this.#outbox = outbox;
    this.#log = logger;
  }

  /** Every record. */
  all(): Task[] {
    return [...this.#tasks.values()];
  }

  /** One record, or undefined. */
  get(id: string): Task | undefined {
    return this.#tasks.get(id);
  }

  /** Takes a record read back from the store (recovery), storing nothing. */
  restore(task: Task): void {
    this.#tasks.set(task.id, task);
  }

  /** Stores a record without an update: a change the manager need not hear of as a state. */
  async save(task: Task): Promise<void> {
    await this.#store.commit({ putTasks: [task] });
    this.#tasks.set(task.id, task);
  }

  /** Drops a record without an update (the manager will see it missing from the inventory). */
  async forget(id: string): Promise<void> {
    await this.#store.commit({ deleteTasks: [id] });
    this.#tasks.delete(id);
  }

  /**
   * Stores `task` with the update that reports it (synced), or deletes its record with
   * that update when `deleted`; then logs the change, with the time since `sinceMs`
   * when given (how long the assignment took).
   */
  async report(given: Task, extra: { deleted?: boolean; sinceMs?: number } = {}): Promise<void> {
    // The engine's words may quote the environment: no secret value leaves in a reason.
    const reason = scrubSecrets(given.reason, given.spec);
    const task = reason === given.reason ? given : withChanges(given, { reason });
    await this.#outbox.append(
      updateOf(task),
      extra.deleted ? { deleteTasks: [task.id] } : { putTasks: [task] },
    );
    if (extra.deleted) this.#tasks.delete(task.id);
    else this.#tasks.set(task.id, task);
    const fields = {
      task: task.id,
      generation: Number(task.generation),
      reason: task.reason || undefined,
      tookMs: extra.sinceMs === undefined ? undefined : Date.now() - extra.sinceMs,
    };
    this.#log.info(fields, `task ${stateName(task.state)}`);
  }

  /** Reports `task` FAILED with `reason`. */
  fail(task: Task, reason: string): Promise<void> {
    return this.report(
      withChanges(task, { state: TaskState.FAILED, reason, finishedAt: timestampNow() }),
    );
  }

  /** Every task the worker holds, for the inventory sent after each (re)connect. */
  inventory(): InventoryItem[] {
    return this.all().map(inventoryItemOf);
  }

  /** The current health of every checked running task, re-sent after each (re)connect. */
  healthReports(): HealthReport[] {
    return this.all()
      .filter((t) => t.state === TaskState.RUNNING && t.health !== HealthStatus.UNSPECIFIED)
      .map((t) =>
        create(HealthReportSchema, {
          taskId: t.id,
          generation: t.generation,
          status: t.health,
          message: t.health === HealthStatus.HEALTHY ? "healthy" : "unhealthy",
          time: timestampNow(),
        }),
      );
  }
}
