import type { Task, TaskState } from "../../gen/cube/v1/task_pb.js";
import type { TimerHandle } from "../../lib/clock.js";
import { hostPortKey } from "../../lib/ports.js";
import type { TrailingThrottle } from "../../lib/trailing-throttle.js";
import type { Amounts, Placement } from "../scheduler/types.js";

/** One task as the manager holds it: the current (immutable) snapshot and bookkeeping. */
export interface TaskEntry {
  /** The task now. Replaced, never mutated: events and responses share old snapshots. */
  task: Task;
  /** Revision of its CREATED event: orders tasks by creation. */
  readonly createdRevision: bigint;
  /** What it asks of a worker, computed once (the spec never changes). */
  readonly request: Amounts;
  /** The fixed host ports it publishes ("8080/tcp"), from {@link hostPortsOf}; absent when none. */
  readonly hostPorts?: readonly string[];
  /** A restart waiting out its back-off. */
  restartTimer?: TimerHandle;
  /**
   * Thins its PROGRESS events, trailing-edge (rules/task-updates.ts applyProgress): what it
   * holds records the latest progress when the window ends, if still news by then.
   */
  progress?: TrailingThrottle<() => void>;
  /** The group it belongs to (a job), told of every change of it. */
  group?: TaskGroup;
  /**
   * The workers it was moved off when they went DOWN, with the generation it had there: the
   * only workers whose returning copy the inventory reconcile may keep (rules/reconcile.ts);
   * a worker's entry goes once its inventory has been reconciled. Stored with the task
   * (ControlPlane.noteMovedOff), so it holds across a manager restart.
   */
  movedOff?: Map<string, bigint>;
  /**
   * Who created it: the id of the token of the RunTask or RunTasks call ("" when the manager
   * runs without tokens); undefined for a task the manager created (a job's replica) or one
   * stored before it was recorded. A retry carrying secret values is recognised only from
   * this token (rules/task-ops.ts `knownTask`). Stored with the task; shown by no API.
   */
  createdBy?: string;
}

/**
 * A set of tasks kept together (a job's replicas, manager/core/job-table.ts). The control
 * plane tells it of every change of a member as it is recorded, so what it counts per worker
 * stays exact within the turn that placed a task.
 */
export interface TaskGroup {
  /** `entry` changed from `before` (undefined when just loaded) to `after`. */
  taskChanged(entry: TaskEntry, before: Task | undefined, after: Task): void;
  /** Where the member `entry` may be placed (constraints, spreading among its peers). */
  placementOf(entry: TaskEntry): Placement;
}

/** The filters of ListTasks; all optional, combined with AND. */
export interface TaskFilter {
  states?: ReadonlySet<TaskState>;
  workerId?: string;
  name?: string;
  labels?: Readonly<Record<string, string>>;
}

/** What a task asks of a worker, from its spec. */
export function requestOf(task: Task): Amounts {
  const r = task.spec?.resources;
  return { cpu: r?.cpu ?? 0, memoryBytes: r?.memoryBytes ?? 0n, diskBytes: r?.diskBytes ?? 0n };
}

/**
 * The fixed host ports a task publishes, as "8080/tcp", or undefined when it publishes none
 * (ports Docker chooses never conflict). The address bound is left out on purpose: 0.0.0.0
 * conflicts with every address, so two tasks on one port are kept apart whatever they bind.
 */
export function hostPortsOf(task: Task): readonly string[] | undefined {
  const ports = task.spec?.ports;
  if (ports === undefined || ports.length === 0) return undefined;
  const fixed = ports.filter((p) => p.hostPort !== 0).map(hostPortKey);
  return fixed.length > 0 ? fixed : undefined;
}

/** The bookkeeping of a task loaded or accepted: its request and host ports, computed once. */
export function newEntry(task: Task, createdRevision: bigint): TaskEntry {
  const hostPorts = hostPortsOf(task);
  return hostPorts === undefined
    ? { task, createdRevision, request: requestOf(task) }
    : { task, createdRevision, request: requestOf(task), hostPorts };
}

/** All tasks, by id and in creation order (for stable paging). */
export class TaskTable {
  readonly #byId = new Map<string, TaskEntry>();
  /** Creation order; createdRevision strictly increases along it. */
  #ordered: TaskEntry[] = [];

  get(id: string): TaskEntry | undefined {
    return this.#byId.get(id);
  }

  get size(): number {
    return this.#byId.size;
  }

  /** Adds a task newer than every task added before. */
  add(entry: TaskEntry): void {
    this.#byId.set(entry.task.id, entry);
    this.#ordered.push(entry);
  }

  /** Removes the tasks of `ids` (garbage collection): one pass over the order, however many. */
  remove(ids: ReadonlySet<string>): void {
    if (ids.size === 0) return;
    for (const id of ids) this.#byId.delete(id);
    this.#ordered = this.#ordered.filter((e) => !ids.has(e.task.id));
  }

  /** Every task, oldest first. */
  all(): readonly TaskEntry[] {
    return this.#ordered;
  }

  /**
   * Up to `limit` tasks matching `filter` created after `afterCreated`, oldest first, and the
   * position to continue from (undefined when nothing matching is left).
   */
  page(
    filter: TaskFilter,
    afterCreated: bigint,
    limit: number,
  ): { tasks: Task[]; next: bigint | undefined } {
    const tasks: Task[] = [];
    for (let i = this.#firstAfter(afterCreated); i < this.#ordered.length; i++) {
      const entry = this.#ordered[i] as TaskEntry;
      if (!matches(entry.task, filter)) continue;
      if (tasks.length === limit) {
        return { tasks, next: this.#ordered[i - 1]?.createdRevision };
      }
      tasks.push(entry.task);
    }
    return { tasks, next: undefined };
  }

  /** Index of the first task created after `revision` (binary search). */
  #firstAfter(revision: bigint): number {
    let lo = 0;
    let hi = this.#ordered.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#ordered[mid] as TaskEntry).createdRevision <= revision) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

function matches(task: Task, filter: TaskFilter): boolean {
  if (filter.states && filter.states.size > 0 && !filter.states.has(task.state)) return false;
  if (filter.workerId && task.workerId !== filter.workerId) return false;
  if (filter.name && task.spec?.name !== filter.name) return false;
  if (filter.labels) {
    const labels = task.spec?.labels ?? {};
    for (const [k, v] of Object.entries(filter.labels)) if (labels[k] !== v) return false;
  }
  return true;
}
