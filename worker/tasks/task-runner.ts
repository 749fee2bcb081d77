import { create } from "@bufbuild/protobuf";
import { durationMs, timestampFromMs, timestampMs, timestampNow } from "@bufbuild/protobuf/wkt";
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
import { DEFAULT_STOP_GRACE_MS, stopGraceMs } from "../../lib/stop-grace.js";
import { isFinished } from "../../lib/task-state.js";
import { TrailingThrottle } from "../../lib/trailing-throttle.js";
import { backoffDelay } from "../backoff.js";
import type { WorkerStore } from "../store/worker-store.js";
import type { Outbox } from "../stream/outbox.js";
import {
  type ContainerInfo,
  type Driver,
  type ExitStatus,
  isEngineAbsent,
  type PullProgress,
} from "./driver.js";
import { ENGINE_BACKOFF, type EngineMonitor } from "./engine-monitor.js";
import { type HealthTarget, healthCheckTarget } from "./health-checker.js";
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
    target: HealthTarget,
    onChange: (report: HealthChange) => void,
    /** When the container started: the check's start period counts from then. */
    startedAtMs?: number,
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
  /**
   * Whether the container engine answers. With it, work that fails because the engine
   * cannot be reached waits for the engine and is tried again (never reported FAILED), and
   * the runner re-syncs with the engine when it is back. Without it, such work fails.
   */
  readonly engine?: EngineMonitor;
}

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
  /** Assignments queued or under way, by task: "generation/action" (a resent one is not queued twice). */
  readonly #applying = new Map<
    string,
    { key: string; generation: bigint; done: Promise<void>; cancel: AbortController }
  >();
  /** Container followed (exit and health) per task, so a re-sync does not follow it twice. */
  readonly #following = new Map<string, string>();
  /** Recovery could not reach the engine at start: it runs when the engine is back. */
  #recoveryPending = false;
  /** Foreign look-alike containers already named in a warning (recovery and every re-sync see them). */
  readonly #foreignWarned = new Set<string>();
  #accepting = true;
  #closed = false;

  constructor(options: TaskRunnerOptions) {
    this.#o = options;
    this.#log = options.logger;
    this.#ledger = new TaskLedger(options.store, options.outbox, options.logger);
    options.driver.onContainerStarted?.(({ containerId, taskId, generation }) => {
      this.#background(taskId, "removing a container of an ended task", async () => {
        const record = this.#ledger.get(taskId);
        if (this.#closed || !record || !isFinished(record.state)) return;
        if (record.generation !== generation || record.containerId !== containerId) return;
        await this.#removeStray(record, containerId);
      });
    });
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
    // The manager sends an assignment again when its ack is late (a long pull, an engine
    // that is down): the one queued or under way acks it when done.
    const key = `${task.generation}/${action}`;
    const queued = this.#applying.get(task.id);
    if (queued?.key === key) return queued.done;
    const receivedAt = Date.now();
    // A STOP's grace is the manager's word (the task's stop_timeout, or its default); 0 kills
    // at once. A RUN carries none: the container it replaces goes with its own task's.
    const graceMs = assignment.stopGrace
      ? Math.max(0, durationMs(assignment.stopGrace))
      : DEFAULT_STOP_GRACE_MS;
    // A newer assignment for the task (a STOP, a later RUN) waits behind this one.
    const superseded = () => this.#applying.get(task.id)?.key !== key;
    // Aborted when a newer assignment comes: a RUN's pull ends there (see #run).
    const cancel = new AbortController();
    const done = this.#serial.run(task.id, async () => {
      let notHeld = false;
      try {
        if (action === AssignmentAction.RUN) {
          await this.#run(task, receivedAt, { superseded, signal: cancel.signal });
        } else if (action === AssignmentAction.STOP)
          notHeld = !(await this.#stop(task.id, graceMs));
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
          notHeld,
        }),
      });
    });
    const entry = { key, generation: task.generation, done, cancel };
    this.#applying.set(task.id, entry);
    // The one before (a RUN pulling its image, say) is superseded now: a STOP, or a RUN of a
    // newer generation, need not wait for its pull to finish (a Kubernetes pod deleted
    // during its pull never starts).
    if (queued && (action === AssignmentAction.STOP || task.generation > queued.generation)) {
      queued.cancel.abort();
    }
    void done.finally(() => {
      if (this.#applying.get(task.id) === entry) this.#applying.delete(task.id);
    });
    return done;
  }

  /**
   * Runs `work` (a step of one task's queue that calls the engine), and when it fails only
   * because the engine cannot be reached, or did not answer within the runtime request
   * timeout, waits until the engine answers and runs it again, with back-off, until it
   * succeeds, fails for another reason, or the runner closes. An engine restart, or a hung
   * one, must not end a task FAILED or leave an assignment unapplied. A step with
   * `superseded` stops trying (throws {@link Superseded}) once that says a newer assignment
   * waits, so a hung engine holds the task's queue no longer than one call.
   */
  async #withEngine<T>(
    taskId: string,
    step: string | { readonly what: string; readonly superseded?: () => boolean },
    work: () => Promise<T>,
  ): Promise<T> {
    const { what, superseded } = typeof step === "string" ? { what: step } : step;
    const engine = this.#o.engine;
    for (let attempt = 0; ; attempt++) {
      try {
        return await work();
      } catch (error) {
        if (!isEngineAbsent(error) || !engine || this.#closed) throw error;
        engine.suspect(error.message);
        // Each timeout, one per deadline at most; an absent engine once.
        const hung = error.kind === "engine-timeout";
        if (attempt === 0 || hung) {
          this.#log.warn(
            { task: taskId, reason: error.message },
            `container engine ${hung ? "did not answer" : "unavailable"} while ${what}: ${hung ? "trying again" : "waiting for it"}`,
          );
        }
        await engine.whenUp();
        if (this.#closed) throw error;
        // Back, or a glitch the ping did not see: a short pause, growing, before trying again.
        await sleep(backoffDelay(attempt, ENGINE_BACKOFF));
        if (superseded?.()) throw new Superseded(error.message);
      }
    }
  }

  /**
   * Applies a RUN. Once a newer assignment of the task came (`superseded`; `signal` aborts
   * with it) the start is given up: during the image pull (cancelled), and before the
   * container is created, so a task stopped while its image pulls never starts.
   */
  async #run(
    task: Task,
    receivedAt: number,
    { superseded, signal }: { superseded: () => boolean; signal: AbortSignal },
  ): Promise<void> {
    const have = this.#ledger.get(task.id);
    if (have && have.generation >= task.generation) return;
    if (have) {
      await this.#withEngine(task.id, "removing the older container", () =>
        this.#removeContainer(have, stopGraceMs(have.spec)),
      );
    }
    const scheduled = newRecord(task, this.#o.workerId, TaskState.SCHEDULED);
    const problem = specProblem(task.spec);
    if (problem) return this.#ledger.fail(scheduled, problem);
    // Stored before the container exists, so a restart knows of it and adopts the
    // container (the driver names it by task and generation) instead of starting another.
    await this.#ledger.save(scheduled);
    const spec = task.spec ?? scheduled.spec;
    if (!spec) return;
    try {
      const info = await this.#withEngine(task.id, { what: "starting", superseded }, async () => {
        // Trailing-edge: the last figure before a stall gets sent when its window ends; what
        // is still held when the pull ends is dropped (the task moves on: RUNNING or FAILED).
        const progress = new TrailingThrottle<PullProgress>(PROGRESS_EVERY_MS, (p) =>
          this.#o.send({
            case: "progress",
            value: create(ProgressSchema, { taskId: task.id, generation: task.generation, ...p }),
          }),
        );
        try {
          if (superseded()) throw new Superseded("a newer assignment came before the pull");
          await this.#o.driver.pull(spec.image, (p) => progress.offer(p), signal);
        } catch (error) {
          if (signal.aborted) throw new Superseded("the image pull was cancelled");
          throw error;
        } finally {
          progress.cancel();
        }
        if (superseded()) throw new Superseded("a newer assignment came during the pull");
        // Idempotent per assignment (the container's name): a retry finds what it made.
        return this.#o.driver.start({
          taskId: task.id,
          generation: task.generation,
          workerId: this.#o.workerId,
          spec,
        });
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
      // The worker is closing while it waits for the engine: not the task's failure. The
      // record stays SCHEDULED, and the next start's recovery (or the manager) takes it up.
      if (isEngineAbsent(error) && this.#closed) return;
      // A STOP or a newer RUN came while the engine did not answer: the start is given up,
      // the record stays SCHEDULED, and that assignment removes what the start may have left.
      if (error instanceof Superseded) {
        this.#log.warn(
          { task: task.id, reason: error.message },
          "start given up for a newer assignment of the task",
        );
        return;
      }
      // Failed for good: a container the engine made after a call timed out goes too.
      await this.#removeLeftover(scheduled).catch((leftover: unknown) =>
        this.#log.warn({ task: task.id, err: leftover }, "could not look for a leftover container"),
      );
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
    if (this.#following.get(id) === containerId) return;
    this.#following.set(id, containerId);
    const unfollow = () => {
      if (this.#following.get(id) === containerId) this.#following.delete(id);
    };
    this.#o.driver.wait(containerId).then(
      (exit) => {
        unfollow();
        this.#background(id, "recording an exit", () => this.#exited(id, containerId, exit));
      },
      (error) => {
        unfollow();
        if (!this.#closed) this.#log.warn({ task: id, err: error }, "lost sight of a container");
      },
    );
    const check = task.spec?.healthCheck;
    if (!check?.path) return;
    const target = task.spec ? healthCheckTarget(task.spec, task.ports) : undefined;
    if (!target) {
      this.#log.warn({ task: id }, "health check has no published port to check");
      return;
    }
    this.#o.health.watch(
      id,
      generation,
      check,
      target,
      (change) => {
        this.#background(id, "recording a health change", () =>
          this.#healthChanged(id, generation, change),
        );
      },
      task.startedAt ? timestampMs(task.startedAt) : Date.now(),
    );
  }

  async #exited(id: string, containerId: string, exit: ExitStatus): Promise<void> {
    const current = this.#ledger.get(id);
    // A STOP or a newer RUN owns the container now, or the exit was already seen.
    if (this.#closed || current?.containerId !== containerId) return;
    if (current.state !== TaskState.RUNNING) return;
    this.#o.health.unwatch(id);
    const ended = withChanges(current, {
      state: exit.exitCode === 0 ? TaskState.COMPLETED : TaskState.FAILED,
      exitCode: exit.exitCode,
      reason: exit.reason,
      finishedAt: timestampFromMs(exit.finishedAtMs),
    });
    await this.#ledger.report(ended);
    // A `docker restart` may have started it again before the end was recorded (its start
    // event then found the task still RUNNING): an ended task keeps no running container.
    const now = await this.#o.driver.inspect(containerId).catch(() => undefined);
    if (now?.running) await this.#removeStray(ended, containerId);
  }

  /**
   * Stops and removes a running container of a task recorded as ended: started again
   * outside cube, it would hold the task's host ports with nobody watching it. The task is
   * not brought back. A failure is logged; the next re-sync finds the container again.
   */
  async #removeStray(task: Task, containerId: string): Promise<void> {
    try {
      await this.#o.driver.stop(containerId, stopGraceMs(task.spec));
      await this.#o.driver.destroy(containerId);
      this.#log.warn(
        { task: task.id, generation: Number(task.generation), containerId },
        `a container of ended task ${task.id} (${containerId.slice(0, 12)}) was started outside cube and was removed`,
      );
    } catch (error) {
      this.#log.error({ task: task.id, err: error }, "cannot remove a container of an ended task");
    }
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

  /**
   * Stops and removes what the worker holds of the task; false when it holds nothing of it
   * (its RUN never came: the STOP took its place), which the ack tells the manager, as no
   * update of a task the worker never had will.
   */
  async #stop(id: string, graceMs: number): Promise<boolean> {
    const current = this.#ledger.get(id);
    if (!current) return false;
    // Marked first: a worker killed mid-stop finishes the stop when it restarts.
    const stopping = withChanges(current, { desiredState: DesiredState.STOPPED });
    await this.#ledger.save(stopping);
    await this.#finishStop(stopping, graceMs);
    return true;
  }

  async #finishStop(task: Task, graceMs: number): Promise<void> {
    await this.#withEngine(task.id, "stopping", () => this.#removeContainer(task, graceMs));
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
    // No container known: its start did not finish, or failed, yet the engine may have made
    // one after a call timed out.
    if (!task.containerId) return this.#removeLeftover(task);
    await this.#o.driver.stop(task.containerId, graceMs);
    await this.#o.driver.destroy(task.containerId);
  }

  /** Removes whatever container the engine holds for the task's assignment, found by labels. */
  async #removeLeftover(task: Task): Promise<void> {
    const { id: taskId, generation } = task;
    await this.#o.driver.removeAssignment?.({ taskId, generation, workerId: this.#o.workerId });
  }

  /**
   * Re-adopts what the worker left behind when it last stopped (kill -9 included):
   * running containers are watched again, those that ended or vanished meanwhile are
   * reported, stale ones removed. Starts nothing. Call once, before connecting. When the
   * engine cannot be reached (and the runner has an engine monitor), the records are kept as
   * they are, and the recovery runs when the engine is back (see {@link resync}).
   */
  async recover(): Promise<Record<RecoveryAction["kind"], number>> {
    const records = await this.#o.store.tasks();
    const counts = {
      adopt: 0,
      exited: 0,
      vanished: 0,
      forget: 0,
      "finish-stop": 0,
      keep: 0,
      stray: 0,
      remove: 0,
      foreign: 0,
    };
    let containers: ContainerInfo[];
    try {
      containers = await this.#o.driver.recover(this.#o.workerId);
    } catch (error) {
      if (isEngineAbsent(error) && this.#o.engine) {
        // Nothing is known of the containers: the records stand until the engine answers.
        for (const task of records) this.#ledger.restore(task);
        this.#recoveryPending = true;
        this.#o.engine.suspect(error.message);
        this.#log.warn({ reason: error.message }, "container engine unavailable: recovery waits");
        return counts;
      }
      throw new Error(
        `cannot list this worker's containers on the Docker engine: ${error instanceof Error ? error.message : error}`,
        { cause: error },
      );
    }
    const ctx = this.#recoveryContext();
    for (const action of planRecovery(records, containers)) {
      counts[action.kind]++;
      if (action.kind === "foreign") {
        await applyRecovery(action, ctx);
        continue;
      }
      const key = action.kind === "remove" ? action.container.taskId : action.task.id;
      const apply = () => applyRecovery(action, ctx);
      // Removing a stale container may wait out a stop grace: nothing depends on it.
      if (action.kind === "remove") {
        this.#background(key, "removing a stale container", apply);
        continue;
      }
      try {
        await this.#serial.run(key, apply);
      } catch (error) {
        // One container the engine refuses to stop or remove must not keep the worker from
        // starting: the record stands, and a later re-sync tries again.
        if (!this.#ledger.get(action.task.id)) this.#ledger.restore(action.task);
        this.#recoveryPending = true;
        this.#log.error({ task: action.task.id, err: error }, `recovery (${action.kind}) failed`);
      }
    }
    return counts;
  }

  #recoveryContext() {
    return {
      ledger: this.#ledger,
      driver: this.#o.driver,
      logger: this.#log,
      graceMs: DEFAULT_STOP_GRACE_MS,
      foreignWarned: this.#foreignWarned,
      removeStray: (task: Task, containerId: string) => this.#removeStray(task, containerId),
      follow: (task: Task) => this.#follow(task),
      finishStop: (task: Task) => this.#finishStop(task, stopGraceMs(task.spec)),
    };
  }

  /**
   * Brings the records in line with the engine again after it was unreachable (it
   * restarted, or was down when the worker started): the recovery plan, made per task in
   * that task's queue from its record as it is then, so it never crosses an assignment under
   * way. Containers that died meanwhile are reported, vanished ones FAILED, stale ones
   * removed; one already followed is left alone. Resolves with the inventory to send the
   * manager (which resends what is missing and stops what should not run), or undefined when
   * the engine went away again (the next return re-syncs).
   */
  async resync(): Promise<InventoryItem[] | undefined> {
    let containers: ContainerInfo[];
    try {
      containers = await this.#o.driver.recover(this.#o.workerId);
    } catch (error) {
      this.#log.warn({ err: error }, "re-sync with the container engine failed");
      if (isEngineAbsent(error)) this.#o.engine?.suspect(error.message);
      this.#recoveryPending = true;
      return undefined;
    }
    this.#recoveryPending = false;
    const byTask = new Map<string, ContainerInfo[]>();
    for (const c of containers) byTask.set(c.taskId, [...(byTask.get(c.taskId) ?? []), c]);
    const seen = new Map(this.#ledger.all().map((t) => [t.id, t]));
    const ids = new Set([...seen.keys(), ...byTask.keys()]);
    const ctx = this.#recoveryContext();
    const steps: Promise<void>[] = [];
    for (const id of ids) {
      const step = this.#serial.run(id, async () => {
        const record = this.#ledger.get(id);
        // Changed since the containers were listed (an assignment ran): the list is stale for it.
        if (record !== seen.get(id)) return;
        for (const action of planRecovery(record ? [record] : [], byTask.get(id) ?? [])) {
          const followed =
            action.kind === "adopt" &&
            action.task.state === TaskState.RUNNING &&
            this.#following.get(id) === action.container.containerId;
          if (followed || action.kind === "keep") continue;
          if (action.kind === "foreign") {
            await applyRecovery(action, ctx);
            continue;
          }
          if (action.kind === "remove") {
            // May wait out a stop grace: after this step, in the task's queue.
            this.#background(id, "removing a stale container", () => applyRecovery(action, ctx));
            continue;
          }
          if (action.kind === "exited" || action.kind === "vanished") this.#o.health.unwatch(id);
          await applyRecovery(action, ctx);
        }
      });
      steps.push(
        step.catch((error: unknown) => {
          this.#recoveryPending = true;
          this.#log.error({ task: id, err: error }, "re-sync of a task failed");
        }),
      );
    }
    await Promise.all(steps);
    this.#log.info({ tasks: ids.size, containers: containers.length }, "re-synced with the engine");
    return this.inventory();
  }

  /**
   * Whether the recovery at start, or a re-sync, could not finish (the engine could not be
   * reached, or refused a step) and has to run again.
   */
  get recoveryPending(): boolean {
    return this.#recoveryPending;
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

/** A start given up because a newer assignment of the task waits (see #withEngine). */
class Superseded extends Error {}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
