import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type Task,
  type TaskEvent,
  TaskEventType,
  TaskSchema,
  type TaskSpec,
  TaskState,
} from "../../gen/cube/v1/task_pb.js";
import { WorkerSchema, WorkerStatus } from "../../gen/cube/v1/worker_pb.js";
import { type Assignment, AssignmentAction } from "../../gen/cube/v1/worker_service_pb.js";
import type { Clock, TimerHandle } from "../../lib/clock.js";
import type { Logger } from "../../lib/logger.js";
import { stopGraceMs } from "../../lib/stop-grace.js";
import { assertTransition, holdsResources, isReady, stateName } from "../../lib/task-state.js";
import { timestampLiteral } from "../../lib/timestamp.js";
import type { Store } from "../store/store.js";
import { ChangeFeed } from "./change-feed.js";
import { EventHub } from "./event-hub.js";
import { JobTable } from "./job-table.js";
import { restartsSoFar } from "./lifecycle.js";
import { ManagerMetrics } from "./manager-metrics.js";
import { newTask } from "./new-task.js";
import type { ResolvedOptions } from "./options.js";
import { Placer } from "./placer.js";
import { newEntry, type TaskEntry, TaskTable } from "./task-table.js";
import { TokenTable } from "./token-table.js";
import { WorkerEntry, WorkerTable } from "./worker-table.js";

/**
 * What the control plane asks of the rules above it (manager/rules/), handed in by whoever
 * opens it: the core never imports a rule, so the layers stay one-way.
 */
export interface ControlPlaneRules {
  /** One pass over the PENDING tasks, placing what fits now (capacity appeared). */
  pendingPass(cp: ControlPlane): void;
  /** Right after the stored state is loaded: start-up grace, restarts to schedule again. */
  resume(cp: ControlPlane): void;
}

/**
 * The manager's state and the one way to change it. Every task change goes through
 * {@link ControlPlane.change}: a new immutable snapshot, one event with the next revision,
 * incremental bookkeeping (worker allocations, pending queue), a queued store write, and —
 * once that write is durable — the event published to watchers. Messages to workers are
 * likewise sent only after the decision behind them is durable.
 */
export class ControlPlane {
  readonly tasks = new TaskTable();
  readonly workers = new WorkerTable();
  /** Jobs: their stored state, versions and replicas (manager/rules/job-ops.ts decides). */
  readonly jobs = new JobTable();
  /** PENDING tasks, oldest first (insertion order of the Map). */
  readonly pending = new Map<string, TaskEntry>();
  /** Entries with a restart timer running. */
  readonly restarting = new Set<TaskEntry>();
  readonly hub: EventHub;
  /** Worker ids whose status, tasks or allocation changed (WatchWorkers). */
  readonly workerFeed = new ChangeFeed();
  /** Worker ids that sent a metrics sample (WatchMetrics). */
  readonly metricsFeed = new ChangeFeed();
  readonly placer: Placer;
  /** Tasks by state, placements, scheduling and commit times (served at GET /metrics). */
  readonly metrics: ManagerMetrics;
  /** Bearer tokens (hashed), loaded with the rest of the state. */
  tokens = new TokenTable();
  readonly store: Store;
  readonly options: ResolvedOptions;
  readonly logger: Logger;
  /** Revision of the last recorded event (durable or about to be). */
  revision: bigint;
  /** Set while a pending pass is queued: new tasks then join the queue instead of jumping it. */
  passQueued = false;
  closed = false;
  /** What waits for the write in flight: events to publish, then callbacks, in order. */
  #post: { promise: Promise<void>; events: TaskEvent[]; fns: (() => void)[] } | undefined;
  readonly #timers = new Set<TimerHandle>();
  /** The clock every rule reads time from (a fake one in tests). */
  readonly clock: Clock;
  readonly #rules: ControlPlaneRules;
  /** Whether info lines are logged (read once: per-task lines are on the hot path). */
  readonly #logInfo: boolean;
  readonly #logDebug: boolean;
  /**
   * Assignments whose decision is not on disk yet: those may not go to a worker. Kept as
   * the few not yet durable rather than a WeakSet of the many that are: a weak table with
   * an entry per placement cost the garbage collector more than the set costs.
   */
  readonly #notDurable = new Set<Assignment>();

  private constructor(
    store: Store,
    options: ResolvedOptions,
    logger: Logger,
    revision: bigint,
    rules: ControlPlaneRules,
  ) {
    this.store = store;
    this.options = options;
    this.clock = options.clock;
    this.#rules = rules;
    this.logger = logger;
    this.revision = revision;
    this.#logInfo = logger.isLevelEnabled("info");
    this.#logDebug = logger.isLevelEnabled("debug");
    this.hub = new EventHub(options.watchHistorySize, revision);
    this.metrics = new ManagerMetrics({ workers: () => this.workers.all() });
    this.placer = new Placer(options.scheduler, this.metrics);
  }

  /**
   * Loads the stored state: every task and worker back in memory, the revision counter
   * restored, then hands the control plane to `rules.resume` (start-up grace, restarts that
   * were waiting out a back-off).
   */
  static async open(
    store: Store,
    options: ResolvedOptions,
    logger: Logger,
    rules: ControlPlaneRules,
  ): Promise<ControlPlane> {
    const started = performance.now();
    const state = await store.load();
    const cp = new ControlPlane(store, options, logger, state.revision, rules);
    cp.tokens = new TokenTable(state.tokens);
    for (const { worker, lastUpdateSeq } of state.workers) {
      cp.workers.add(new WorkerEntry(worker, lastUpdateSeq, WorkerStatus.DISCONNECTED));
    }
    for (const { task, createdRevision, movedOff, createdBy } of state.tasks) {
      const entry = newEntry(task, createdRevision);
      if (movedOff) entry.movedOff = new Map(movedOff);
      if (createdBy !== undefined) entry.createdBy = createdBy;
      cp.tasks.add(entry);
      cp.#account(entry, undefined, task);
    }
    cp.jobs.load(state.jobs, state.jobVersions, cp.tasks.all());
    for (const node of state.nodes) {
      const w = cp.workers.get(node.workerId);
      if (!w) continue;
      w.drain = node.drain;
      w.setCordoned(node.cordoned);
    }
    rules.resume(cp);
    logger.info(
      {
        tasks: cp.tasks.size,
        workers: cp.workers.size,
        revision: String(cp.revision),
        ms: Math.round(performance.now() - started),
      },
      "state loaded",
    );
    return cp;
  }

  /**
   * Accepts a new task (PENDING, CREATED event). The caller then tries to place it.
   * `createdBy`: the id of the token that asked ("" without tokens), kept with the task;
   * undefined when the manager itself creates it (a job's replica).
   */
  createTask(id: string, spec: TaskSpec, createdBy?: string): TaskEntry {
    const revision = ++this.revision;
    const now = this.clock.now();
    const task = newTask(id, spec, revision, now);
    const entry = newEntry(task, revision);
    if (createdBy !== undefined) entry.createdBy = createdBy;
    this.tasks.add(entry);
    this.pending.set(id, entry);
    this.metrics.taskChanged(undefined, task);
    this.#record(entry, task, TaskEventType.CREATED, "accepted", now);
    // Debug: the event log (WatchTasks) is every task's record; info is kept for what an
    // operator must see. Guarded: the fields would be gathered even with debug off.
    if (this.#logDebug) {
      this.logger.debug(
        { task: id, taskName: spec.name || undefined, image: spec.image },
        "task accepted",
      );
    }
    return entry;
  }

  /**
   * Records a change of a task: a new snapshot (`patch` over the current one), an event of
   * `type`, bookkeeping, persistence; the event is published once durable. Returns the new
   * snapshot. A state move must be in the transition table (lib/task-state.ts): an illegal
   * one throws before anything changes — a bug of the rule that asked for it. Rules build
   * their patches with core/lifecycle.ts; updates from workers are checked before they get
   * here (rules/task-updates.ts refuses and logs an illegal one).
   */
  change(entry: TaskEntry, patch: Partial<Task>, type: TaskEventType, message = ""): Task {
    const before = entry.task;
    if (patch.state !== undefined && patch.state !== before.state) {
      assertTransition(before.state, patch.state);
    }
    const revision = ++this.revision;
    const now = this.clock.now();
    const after: Task = { ...before, ...patch, revision };
    // ready_at follows every change here, so no rule has to remember it; so does the reset
    // of the restart count of a task that ran ready long enough, once it stops being ready.
    const ready = isReady(after);
    if (ready !== isReady(before)) {
      after.readyAt = ready ? timestampLiteral(now) : undefined;
      if (!ready && patch.restartCount === undefined) {
        after.restartCount = restartsSoFar(before, now);
      }
    }
    entry.task = after;
    this.#account(entry, before, after);
    this.#record(entry, after, type, message, now);
    const notable = isNotable(before.state, after.state);
    if (before.state !== after.state && (notable ? this.#logInfo : this.#logDebug)) {
      this.logger[notable ? "info" : "debug"](
        {
          task: after.id,
          worker: after.workerId || undefined,
          generation: Number(after.generation),
          from: stateName(before.state),
          to: stateName(after.state),
          reason: after.reason || undefined,
        },
        `task ${stateName(after.state)}`,
      );
    }
    return after;
  }

  /**
   * Removes ended tasks for good (garbage collection, rules/task-gc.ts): for each a DELETED
   * event carrying its last snapshot (watchers drop it), its record removed in the same group
   * commit, and it is gone from the table; its worker gets a STOP, which removes the
   * container kept since the task ended. Only for tasks nothing refers to any more: ended,
   * no restart pending, no longer a job's replica.
   */
  deleteTasks(removals: readonly { entry: TaskEntry; message: string }[]): void {
    const now = this.clock.now();
    const ids = new Set<string>();
    for (const { entry, message } of removals) {
      const task: Task = { ...entry.task, revision: ++this.revision };
      entry.task = task;
      this.metrics.tasks.move(task.state, undefined);
      this.pending.delete(task.id);
      // An ended task's container is kept on its worker (stopped) so `cube logs` can read it,
      // until now: a STOP removes it and the worker's record of the task, at once rather than
      // at the worker's next reconnect. A worker away gets it when it is back (its inventory
      // reconcile settles it), one that holds nothing acks it as not held.
      const w = task.workerId ? this.workers.get(task.workerId) : undefined;
      w?.taskMetrics.delete(task.id);
      if (w) this.assign(w, AssignmentAction.STOP, task);
      this.#record(entry, task, TaskEventType.DELETED, message, now, false);
      this.store.deleteTask(task.id, entry.createdRevision);
      ids.add(task.id);
    }
    this.tasks.remove(ids);
  }

  /** Changes fields people read but no watcher needs (a pending reason, a container id): stored, no event. */
  touch(entry: TaskEntry, patch: Partial<Task>): void {
    entry.task = { ...entry.task, ...patch };
    this.#put(entry, entry.task);
  }

  /**
   * Notes that `entry` is being moved off `workerId` (DOWN) at its current generation: that
   * worker's copy is the only returning one the inventory reconcile may keep. Stored.
   */
  noteMovedOff(entry: TaskEntry, workerId: string): void {
    entry.movedOff ??= new Map();
    entry.movedOff.set(workerId, entry.task.generation);
    this.#put(entry, entry.task);
  }

  /** Forgets `workerId`'s entry in `entry.movedOff` once its inventory settled it. Stored. */
  settleMovedOff(entry: TaskEntry, workerId: string): void {
    if (!entry.movedOff?.delete(workerId)) return;
    if (entry.movedOff.size === 0) entry.movedOff = undefined;
    this.#put(entry, entry.task);
  }

  #put(entry: TaskEntry, task: Task): void {
    const { movedOff, createdRevision, createdBy } = entry;
    // A copy: the entry's map changes later, the store writes this batch at its flush.
    this.store.putTask({
      task,
      createdRevision,
      ...(movedOff && { movedOff: new Map(movedOff) }),
      ...(createdBy !== undefined && { createdBy }),
    });
  }

  /**
   * Sends (once durable) a RUN or STOP of `task` to `worker`, tracked until acknowledged. A RUN
   * carries the task whole (its spec, secret_env values included); a STOP only the task's id
   * and the generation to stop: the worker stops what it holds of the task by its id, so
   * every STOP, whoever decided it, leaves the spec and its secrets behind.
   */
  assign(worker: WorkerEntry, action: AssignmentAction, task: Task): void {
    // A literal, not create(): this runs once per placement.
    const assignment: Assignment = {
      $typeName: "cube.v1.Assignment",
      action,
      task:
        action === AssignmentAction.STOP
          ? create(TaskSchema, { id: task.id, generation: task.generation })
          : task,
      // The task's own stop_timeout, else the manager's default.
      stopGrace:
        action === AssignmentAction.STOP
          ? durationFromMs(stopGraceMs(task.spec, this.options.stopGraceMs))
          : undefined,
    };
    worker.unacked.set(task.id, assignment);
    this.#notDurable.add(assignment);
    this.afterCommit(() => {
      // Superseded assignments are not sent; one sent before `registered` would break the
      // protocol, and the inventory reconcile resends what is missing anyway.
      this.#notDurable.delete(assignment);
      if (worker.unacked.get(task.id) === assignment) this.#dispatch(worker, task.id);
    });
  }

  /** An assignment the worker applied; its room in the window goes to the next waiting. */
  acknowledged(worker: WorkerEntry, taskId: string, generation: bigint, action: AssignmentAction) {
    const a: Assignment | undefined = worker.unacked.get(taskId);
    if (!a || a.action !== action) return;
    if (action === AssignmentAction.RUN && a.task?.generation !== generation) return;
    worker.settle(taskId);
    this.pumpAssignments(worker);
  }

  /** Sends waiting assignments while the worker's window has room. */
  pumpAssignments(worker: WorkerEntry): void {
    for (const id of worker.waiting) {
      if (worker.inFlight.size >= this.options.assignmentWindow) return;
      this.#dispatch(worker, id);
    }
  }

  /**
   * Sends the task's latest assignment down the worker's stream, or queues it when the
   * window is full. A task already in flight is replaced in place (a STOP overtaking its
   * RUN goes at once).
   */
  #dispatch(worker: WorkerEntry, taskId: string): void {
    const conn = worker.connection;
    const assignment = worker.unacked.get(taskId);
    // Not durable yet: its own commit callback dispatches it.
    if (!conn?.registered || !assignment || this.#notDurable.has(assignment)) {
      worker.waiting.delete(taskId);
      return;
    }
    if (!worker.inFlight.has(taskId)) {
      if (worker.inFlight.size >= this.options.assignmentWindow) {
        worker.waiting.add(taskId); // a task already waiting keeps its place
        return;
      }
      worker.inFlight.add(taskId);
    }
    worker.waiting.delete(taskId);
    conn.send({ case: "assignment", value: assignment });
  }

  /**
   * Stores a worker's identity and update seq (with the next group commit). Called for
   * every update a worker sends: the record object is passed as is, so the store can keep
   * its encoding until the identity changes. Whatever changes the record (a register, a
   * worker going DOWN with its down_since) sets a new object (WorkerEntry.setRecord).
   */
  saveWorker(worker: WorkerEntry): void {
    this.store.putWorker({ worker: worker.record, lastUpdateSeq: worker.lastUpdateSeq });
  }

  /**
   * Runs `fn` once everything recorded so far is durable (callbacks run in order, after the
   * events recorded before that commit are published).
   */
  afterCommit(fn: () => void): void {
    this.#postFor().fns.push(fn);
  }

  /**
   * What runs once everything recorded so far is durable: the events are published first
   * (in revision order), then the callbacks. Events are listed rather than wrapped in a
   * callback each: two fewer objects per placement for the young generation to copy while
   * a batch is in flight.
   */
  #postFor(): { events: TaskEvent[]; fns: (() => void)[] } {
    const promise = this.store.flush();
    if (this.#post?.promise === promise) return this.#post;
    const post = { promise, events: [] as TaskEvent[], fns: [] as (() => void)[] };
    this.#post = post;
    promise.then(
      () => {
        if (this.#post === post) this.#post = undefined;
        for (const e of post.events) this.hub.publish(e);
        for (const f of post.fns) f();
      },
      (error: Error) => {
        if (this.#post === post) this.#post = undefined;
        this.logger.fatal({ err: error }, "store write failed: changes are no longer acknowledged");
      },
    );
    return post;
  }

  /** Resolves once everything recorded so far is durable; UNAVAILABLE when the store failed. */
  async committed(): Promise<void> {
    try {
      await this.store.flush();
    } catch (error) {
      throw new ConnectError(
        `the manager cannot write its store: ${(error as Error).message}`,
        Code.Unavailable,
      );
    }
  }

  /** Queues one pass over the pending tasks (capacity appeared); passes coalesce per turn. */
  wakePending(): void {
    if (this.passQueued || this.pending.size === 0 || this.closed) return;
    this.passQueued = true;
    setImmediate(() => {
      this.passQueued = false;
      if (!this.closed) this.#rules.pendingPass(this);
    });
  }

  /** A timer of the control plane's clock that {@link ControlPlane.close} cancels. */
  timer(ms: number, fn: () => void): TimerHandle {
    const t = this.clock.setTimeout(() => {
      this.#timers.delete(t);
      if (!this.closed) fn();
    }, ms);
    this.#timers.add(t);
    return t;
  }

  clearTimer(t: TimerHandle | undefined): void {
    if (!t) return;
    this.clock.clearTimeout(t);
    this.#timers.delete(t);
  }

  /** Cancels timers and ends worker streams; the store stays open for the caller to close. */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.#timers) this.clock.clearTimeout(t);
    this.#timers.clear();
    for (const w of this.workers.all()) w.connection?.end();
    await this.store.flush().catch(() => undefined);
  }

  #record(
    entry: TaskEntry,
    task: Task,
    type: TaskEventType,
    message: string,
    now: number,
    keep = true,
  ): void {
    const event: TaskEvent = {
      $typeName: "cube.v1.TaskEvent",
      revision: task.revision,
      type,
      time: timestampLiteral(now),
      task,
      message,
    };
    if (keep) this.#put(entry, task);
    this.store.putEvent(event);
    this.#postFor().events.push(event);
  }

  /** Keeps worker allocations, task sets and the pending queue in step with one change. */
  #account(entry: TaskEntry, before: Task | undefined, after: Task): void {
    entry.group?.taskChanged(entry, before, after);
    this.metrics.taskChanged(before, after);
    const heldBefore = before !== undefined && holdsResources(before.state) && before.workerId;
    const heldAfter = holdsResources(after.state) && after.workerId;
    if (heldBefore && !(heldAfter && before.workerId === after.workerId)) {
      const w = this.workers.get(before.workerId);
      if (w) {
        w.release(after.id, entry.request, entry.hostPorts);
        this.workerFeed.notify(w.id);
      }
      this.wakePending();
    }
    if (heldAfter && !(heldBefore && before?.workerId === after.workerId)) {
      let w = this.workers.get(after.workerId);
      if (!w) {
        // Only after a load whose worker record is missing: keep the task where it is.
        w = new WorkerEntry(
          create(WorkerSchema, { id: after.workerId, name: after.workerId }),
          0n,
          WorkerStatus.DISCONNECTED,
        );
        this.workers.add(w);
      }
      w.reserve(after.id, entry.request, entry.hostPorts);
      this.workerFeed.notify(w.id);
    }
    if (after.state === TaskState.PENDING) {
      if (!this.pending.has(after.id)) this.pending.set(after.id, entry);
    } else if (before?.state === TaskState.PENDING) {
      this.pending.delete(after.id);
    }
  }
}

/**
 * State changes logged at info: failures and lost contact, and whatever follows them. The
 * routine path (SCHEDULED, RUNNING, COMPLETED) is logged at debug: at info it cost a line
 * per task per move, which the event log (WatchTasks) already holds.
 */
function isNotable(from: TaskState, to: TaskState): boolean {
  return (
    to === TaskState.FAILED ||
    to === TaskState.UNKNOWN ||
    from === TaskState.FAILED ||
    from === TaskState.UNKNOWN
  );
}
