import type { JobRecord, JobVersionRecord, NodeRecord } from "../../gen/cube/store/v1/jobs_pb.js";
import type { TokenRecord } from "../../gen/cube/store/v1/records_pb.js";
import type { Task, TaskEvent } from "../../gen/cube/v1/task_pb.js";
import type { Worker } from "../../gen/cube/v1/worker_pb.js";

export type {
  JobRecord,
  JobVersionRecord,
  NodeRecord,
} from "../../gen/cube/store/v1/jobs_pb.js";
export type { TokenRecord } from "../../gen/cube/store/v1/records_pb.js";

/** A task as stored, with the revision of its CREATED event, which orders tasks by creation. */
export interface TaskRecord {
  readonly task: Task;
  readonly createdRevision: bigint;
  /**
   * The workers it was moved off when they went DOWN, with the generation it had there
   * (manager/core/task-table.ts `movedOff`). A snapshot: the store keeps what it was given.
   */
  readonly movedOff?: ReadonlyMap<string, bigint>;
  /**
   * The id of the token that created it through RunTask/RunTasks ("" without tokens);
   * undefined when the manager created it (a job's replica) or an older manager stored it
   * (manager/core/task-table.ts `createdBy`).
   */
  readonly createdBy?: string;
}

/** A worker as stored: who it is, and the highest update seq the manager has persisted for it. */
export interface WorkerRecord {
  /**
   * Identity, address, capacity, labels, registration time, and down_since while it is DOWN
   * (node GC counts from it across restarts); live fields are not kept.
   */
  readonly worker: Worker;
  readonly lastUpdateSeq: bigint;
}

/** Everything a manager needs to resume after a restart. */
export interface LoadedState {
  /** Every task, oldest first. */
  readonly tasks: TaskRecord[];
  readonly workers: WorkerRecord[];
  /** Every bearer token (hashed), revoked ones included. */
  readonly tokens: TokenRecord[];
  /** Every job (its spec, version and deployment), by name. */
  readonly jobs: JobRecord[];
  /** Every version of every job, by job name, then version. */
  readonly jobVersions: JobVersionRecord[];
  /** What operators set on workers (cordon, drain). */
  readonly nodes: NodeRecord[];
  /** Revision of the latest event (0 when none). */
  readonly revision: bigint;
}

/**
 * The manager's durable state: tasks, the global event log (revision-ordered, with a per-task
 * index) and workers. Writes are queued and made durable together (group commit): a change is
 * acknowledged to anyone only after a {@link Store.flush} that covers it has resolved.
 *
 * Events read back may carry their task without `spec`: a spec never changes, so readers fill
 * it in from the task.
 */
export interface Store {
  /** Reads everything back. Call once, before any write. */
  load(): Promise<LoadedState>;
  /** Queues the latest state of a task (replacing any queued earlier state of it). */
  putTask(record: TaskRecord): void;
  /**
   * Queues the removal of a task's record (garbage collection), in the same group commit as
   * what was queued before it. Its events stay until retention drops them.
   */
  deleteTask(id: string, createdRevision: bigint): void;
  /** Queues an event; revisions must be queued in increasing order. */
  putEvent(event: TaskEvent): void;
  /** Queues the latest state of a worker. */
  putWorker(record: WorkerRecord): void;
  /** Queues the removal of a worker's record and its node record (cordon, drain). */
  deleteWorker(id: string): void;
  /** Queues the latest state of a token (with the next group commit). */
  putToken(record: TokenRecord): void;
  /** Queues the latest state of a job (with the next group commit). */
  putJob(record: JobRecord): void;
  /** Queues a version of a job (written once, updated when its deployment ends). */
  putJobVersion(record: JobVersionRecord): void;
  /** Queues what operators set on a worker (cordon, drain). */
  putNode(record: NodeRecord): void;
  /**
   * Resolves once everything queued so far is durable (on disk, synced). Calls made before the
   * same write starts get the same promise. Rejects when the write fails; the store then
   * refuses every later write, since acknowledging after a lost write would lie.
   */
  flush(): Promise<void>;
  /** Events of one task with a revision above `afterRevision`, oldest first, at most `limit`. */
  taskEvents(taskId: string, afterRevision: bigint, limit: number): Promise<TaskEvent[]>;
  /** Events of all tasks with a revision above `afterRevision`, oldest first, at most `limit`. */
  eventsAfter(afterRevision: bigint, limit: number): Promise<TaskEvent[]>;
  /** Revision of the oldest event still kept (older ones were dropped by retention); 1 when none was dropped. */
  oldestRevision(): bigint;
  /** Flushes and releases the store. */
  close(): Promise<void>;
}

/** Default number of events a store keeps before dropping the oldest. */
export const DEFAULT_EVENT_RETENTION = 500_000;
