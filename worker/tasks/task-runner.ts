import { create } from "@bufbuild/protobuf";
import { durationMs, timestampFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import {
  DesiredState,
  type HealthCheck,
  HealthStatus,
  type Task,
  TaskState,
} from "../../gen/cube/v1/task_pb.js";
import {
  type Assignment,
  AssignmentAckSchema,
  AssignmentAction,
  type ConnectRequest,
  type HealthReport,
  HealthReportSchema,
  type InventoryItem,
  ProgressSchema,
} from "../../gen/cube/v1/worker_service_pb.js";
import type { Logger } from "../../lib/logger.js";
import type { WorkerStore } from "../store/worker-store.js";
import type { Outbox } from "../stream/outbox.js";
import type { ContainerInfo, Driver, ExitStatus } from "./driver.js";
import { healthCheckPort } from "./health-checker.js";
import { KeyedSerial } from "./keyed-serial.js";
import { applyRecovery } from "./recovery.js";
import { planRecovery, type RecoveryAction } from "./recovery-plan.js";
import { TaskLedger } from "./task-ledger.js";
import { failureReason, newRecord, specProblem, withChanges } from "./task-record.js";

/** A health check result change, as the health checker reports it. */
export interface HealthChange {
  readonly status: HealthStatus;
  readonly message: string;
  readonly consecutiveFailures: number;
}

/** The part of the health checker the runner uses. */
export interface HealthWatcher {
  watch(
    taskId: string,
    generation: bigint,
    check: HealthCheck,
    hostPort: number,
    onChange: (report: HealthChange) => void,
  ): void;
  unwatch(taskId: string): void;
}

/** A message up the stream that is sent only while connected (never stored). */
export type LiveMessage = Exclude<ConnectRequest["message"], { case: "update" | undefined }>;

/** What a {@link TaskRunner} works with. */
export interface TaskRunnerOptions {
  readonly workerId: string;
  readonly driver: Driver;
  readonly store: WorkerStore;
  readonly outbox: Outbox;
  readonly health: HealthWatcher;
  readonly logger: Logger;
  /** Sends a message up the stream if it is connected; drops it otherwise. */
  readonly send: (message: LiveMessage) => void;
}

const DEFAULT_STOP_GRACE_MS = 10_000;
const PROGRESS_EVERY_MS = 250;

/**
 * Carries out assignments on the driver and reports what the containers do. Every
 * change to one task — a RUN, a STOP, its container exiting, a health result — runs
 * through one per-task queue, so they never interleave; state changes are stored with
 * their update in one synced batch before anything is sent. A bad task (missing image,
 * taken port, exit at once) ends FAILED with a reason; nothing here throws at the caller.
 */
export class TaskRunner {
  readonly #o: TaskRunnerOptions;
  readonly #log: Logger;
  readonly #ledger: TaskLedger;
  readonly #serial = new KeyedSerial();
  #accepting = true;
  #closed = false;

  constructor(options: TaskRunnerOptions) {
    this.#o = options;
    this.#log = options.logger;
    this.#ledger = new TaskLedger(options.store, options.outbox, options.logger);
  }

  /** The worker's task records (its read-only view of its tasks). */
  tasks(): Task[] {
    return this.#ledger.all();
  }

  /** One task record, or undefined. */
  task(id: string): Task | undefined {
    return this.#ledger.get(id);
  }

  /** Every task the worker holds, for the inventory sent after each (re)connect. */
  inventory(): InventoryItem[] {
    return this.#ledger.inventory();
  }

  /** The current health of every checked running task, re-sent after each (re)connect. */
  healthReports(): HealthReport[] {
    return this.#ledger.healthReports();
  }

  /**
   * Applies an assignment (idempotently) and acks it. Resolves when done; never rejects.
   * Ignored once {@link close} has begun: the manager resends what was not acked.
   */
  apply(assignment: Assignment): Promise<void> {
    if (!this.#accepting) return Promise.resolve();
    const task = assignment.task;
    const { action } = assignment;
    if (!task?.id) {
      this.#log.warn({ action }, "assignment without a task id: ignored");
      this.#o.send({
        case: "assignmentAck",
        value: create(AssignmentAckSchema, { taskId: "", generation: 0n, action }),
      });
      return Promise.resolve();
    }
    const receivedAt = Date.now();
    const grace = assignment.stopGrace ? durationMs(assignment.stopGrace) : 0;
    const graceMs = grace > 0 ? grace : DEFAULT_STOP_GRACE_MS;
    return this.#serial.run(task.id, async () => {
      try {
        if (action === AssignmentAction.RUN) await this.#run(task, graceMs, receivedAt);
        else if (action === AssignmentAction.STOP) await this.#stop(task.id, graceMs);
        else {
          this.#log.warn({ task: task.id, action }, "assignment with an unknown action: ignored");
        }
      } catch (error) {
        // Only the store or a STOP on a failing Docker engine get here: not acked, so
        // the manager's reconcile sends it again.
        this.#log.error({ task: task.id, err: error }, "assignment not applied");
        return;
      }
      this.#o.send({
        case: "assignmentAck",
        value: create(AssignmentAckSchema, {
          taskId: task.id,
          generation: task.generation,
          action,
        }),
      });
    });
  }

  async #run(task: Task, graceMs: number, receivedAt: number): Promise<void> {
    const have = this.#ledger.get(task.id);
    if (have && have.generation >= task.generation) return;
    if (have) await this.#removeContainer(have, graceMs);
    const scheduled = newRecord(task, this.#o.workerId, TaskState.SCHEDULED);
    const problem = specProblem(task.spec);
    if (problem) return this.#ledger.fail(scheduled, problem);
    // Stored before the container exists, so a restart knows of it and adopts the
    // container (the driver names it by task and generation) instead of starting another.
    await this.#ledger.save(scheduled);
    const spec = task.spec ?? scheduled.spec;
    if (!spec) return;
    try {
      let lastProgress = 0;
      await this.#o.driver.pull(spec.image, (p) => {
        const now = Date.now();
        if (now - lastProgress < PROGRESS_EVERY_MS) return;
        lastProgress = now;
        this.#o.send({
          case: "progress",
          value: create(ProgressSchema, { taskId: task.id, generation: task.generation, ...p }),
        });
      });
      const info = await this.#o.driver.start({
        taskId: task.id,
        generation: task.generation,
        workerId: this.#o.workerId,
        spec,
      });
      const running = withChanges(scheduled, {
        state: TaskState.RUNNING,
        containerId: info.containerId,
        ports: info.ports,
        startedAt: timestampFromMs(info.startedAtMs ?? Date.now()),
        reason: "",
      });
      await this.#ledger.report(running, { sinceMs: receivedAt });
      this.#follow(running);
    } catch (error) {
      await this.#ledger.fail(scheduled, failureReason(error));
    }
  }

  /** Queues `fn` for task `key` with nobody waiting on it: a failure is logged, never thrown. */
  #background(key: string, what: string, fn: () => Promise<void>): void {
    this.#serial.run(key, fn).catch((error: unknown) => {
      if (!this.#closed) this.#log.error({ task: key, err: error }, `failed ${what}`);
    });
  }

  /** Watches a running container: its exit through the driver, its health check. */
  #follow(task: Task): void {
    const { id, generation, containerId } = task;
    this.#o.driver.wait(containerId).then(
      (exit) =>
        this.#background(id, "recording an exit", () => this.#exited(id, containerId, exit)),
      (error) => {
        if (!this.#closed) this.#log.warn({ task: id, err: error }, "lost sight of a container");
      },
    );
    const check = task.spec?.healthCheck;
    if (!check?.path) return;
    const port = task.spec ? healthCheckPort(task.spec, task.ports) : undefined;
    if (!port) {
      this.#log.warn({ task: id }, "health check has no published port to check");
      return;
    }
    this.#o.health.watch(id, generation, check, port, (change) => {
      this.#background(id, "recording a health change", () =>
        this.#healthChanged(id, generation, change),
      );
    });
  }

  async #exited(id: string, containerId: string, exit: ExitStatus): Promise<void> {
    const current = this.#ledger.get(id);
    // A STOP or a newer RUN owns the container now, or the exit was already seen.
    if (this.#closed || current?.containerId !== containerId) return;
    if (current.state !== TaskState.RUNNING) return;
    this.#o.health.unwatch(id);
    await this.#ledger.report(
      withChanges(current, {
        state: exit.exitCode === 0 ? TaskState.COMPLETED : TaskState.FAILED,
        exitCode: exit.exitCode,
        reason: exit.reason,
        finishedAt: timestampFromMs(exit.finishedAtMs),
      }),
    );
  }

  async #healthChanged(id: string, generation: bigint, change: HealthChange): Promise<void> {
    const current = this.#ledger.get(id);
    if (this.#closed || current?.generation !== generation) return;
    if (current.state !== TaskState.RUNNING) return;
    await this.#ledger.save(withChanges(current, { health: change.status }));
    this.#log.info(
      { task: id, generation: Number(generation), message: change.message },
      `task ${HealthStatus[change.status]}`,
    );
    this.#o.send({
      case: "health",
      value: create(HealthReportSchema, {
        taskId: id,
        generation,
        ...change,
        time: timestampNow(),
      }),
    });
  }

  async #stop(id: string, graceMs: number): Promise<void> {
    const current = this.#ledger.get(id);
    if (!current) return;
    // Marked first: a worker killed mid-stop finishes the stop when it restarts.
    const stopping = withChanges(current, { desiredState: DesiredState.STOPPED });
    await this.#ledger.save(stopping);
    await this.#finishStop(stopping, graceMs);
  }

  async #finishStop(task: Task, graceMs: number): Promise<void> {
    await this.#removeContainer(task, graceMs);
    await this.#ledger.report(
      withChanges(task, {
        state: TaskState.COMPLETED,
        reason: "stopped",
        finishedAt: timestampNow(),
      }),
      { deleted: true },
    );
  }

  async #removeContainer(task: Task, graceMs: number): Promise<void> {
    this.#o.health.unwatch(task.id);
    if (!task.containerId) return;
    await this.#o.driver.stop(task.containerId, graceMs);
    await this.#o.driver.destroy(task.containerId);
  }

  /**
   * Re-adopts what the worker left behind when it last stopped (kill -9 included):
   * running containers are watched again, those that ended or vanished meanwhile are
   * reported, stale ones removed. Starts nothing. Call once, before connecting.
   */
  async recover(): Promise<Record<RecoveryAction["kind"], number>> {
    const records = await this.#o.store.tasks();
    let containers: ContainerInfo[];
    try {
      containers = await this.#o.driver.recover(this.#o.workerId);
    } catch (error) {
      throw new Error(
        `cannot list this worker's containers on the Docker engine: ${error instanceof Error ? error.message : error}`,
        { cause: error },
      );
    }
    const counts = {
      adopt: 0,
      exited: 0,
      vanished: 0,
      forget: 0,
      "finish-stop": 0,
      keep: 0,
      remove: 0,
    };
    const ctx = {
      ledger: this.#ledger,
      driver: this.#o.driver,
      logger: this.#log,
      graceMs: DEFAULT_STOP_GRACE_MS,
      follow: (task: Task) => this.#follow(task),
      finishStop: (task: Task) => this.#finishStop(task, DEFAULT_STOP_GRACE_MS),
    };
    for (const action of planRecovery(records, containers)) {
      counts[action.kind]++;
      const key = action.kind === "remove" ? action.container.taskId : action.task.id;
      const apply = () => applyRecovery(action, ctx);
      // Removing a stale container may wait out a stop grace: nothing depends on it.
      if (action.kind === "remove") this.#background(key, "removing a stale container", apply);
      else await this.#serial.run(key, apply);
    }
    return counts;
  }

  /** Stops taking assignments; resolves once those under way are done (or `deadlineMs` passed). */
  async drain(deadlineMs: number): Promise<void> {
    this.#accepting = false;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#serial.idle(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, deadlineMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Stops recording anything; call before closing the store. */
  close(): void {
    this.#accepting = false;
    this.#closed = true;
  }
}
