import type { TaskEvent } from "../../gen/cube/v1/task_pb.js";
import {
  DEFAULT_EVENT_RETENTION,
  type JobRecord,
  type JobVersionRecord,
  type LoadedState,
  type NodeRecord,
  type Store,
  type TaskRecord,
  type TokenRecord,
  type WorkerRecord,
} from "./store.js";

/**
 * A {@link Store} held in memory, for unit tests. It survives a manager being closed and a new
 * one opened over it (as a restart would), but not the process. Writes are "durable" at once.
 */
export class MemoryStore implements Store {
  readonly #tasks = new Map<string, TaskRecord>();
  readonly #workers = new Map<string, WorkerRecord>();
  readonly #tokens = new Map<string, TokenRecord>();
  readonly #jobs = new Map<string, JobRecord>();
  readonly #jobVersions = new Map<string, JobVersionRecord>();
  readonly #nodes = new Map<string, NodeRecord>();
  /** Retained events, oldest first; revisions are contiguous. */
  #events: TaskEvent[] = [];
  readonly #retention: number;

  /** `eventRetention`: how many events to keep (default {@link DEFAULT_EVENT_RETENTION}). */
  constructor(options: { eventRetention?: number } = {}) {
    this.#retention = options.eventRetention ?? DEFAULT_EVENT_RETENTION;
  }

  async load(): Promise<LoadedState> {
    const tasks = [...this.#tasks.values()].sort((a, b) =>
      a.createdRevision < b.createdRevision ? -1 : 1,
    );
    return {
      tasks,
      workers: [...this.#workers.values()],
      tokens: [...this.#tokens.values()],
      jobs: [...this.#jobs.values()],
      jobVersions: [...this.#jobVersions.values()],
      nodes: [...this.#nodes.values()],
      revision: this.#events.at(-1)?.revision ?? 0n,
    };
  }

  putTask(record: TaskRecord): void {
    this.#tasks.set(record.task.id, record);
  }

  deleteTask(id: string): void {
    this.#tasks.delete(id);
  }

  putEvent(event: TaskEvent): void {
    this.#events.push(event);
    // Dropping in chunks keeps the amortised cost per event O(1).
    if (this.#events.length > this.#retention * 1.1 + 16) {
      this.#events = this.#events.slice(this.#events.length - this.#retention);
    }
  }

  putWorker(record: WorkerRecord): void {
    this.#workers.set(record.worker.id, record);
  }

  deleteWorker(id: string): void {
    this.#workers.delete(id);
    this.#nodes.delete(id);
  }

  putToken(record: TokenRecord): void {
    this.#tokens.set(record.token?.id ?? "", record);
  }

  putJob(record: JobRecord): void {
    this.#jobs.set(record.job?.spec?.name ?? "", record);
  }

  putJobVersion(record: JobVersionRecord): void {
    const v = record.version;
    this.#jobVersions.set(`${v?.spec?.name}/${v?.version}`, record);
  }

  putNode(record: NodeRecord): void {
    this.#nodes.set(record.workerId, record);
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  async taskEvents(taskId: string, afterRevision: bigint, limit: number): Promise<TaskEvent[]> {
    const out: TaskEvent[] = [];
    for (const e of this.#events) {
      if (e.revision > afterRevision && e.task?.id === taskId) {
        out.push(e);
        if (out.length >= limit) break;
      }
    }
    return out;
  }

  async eventsAfter(afterRevision: bigint, limit: number): Promise<TaskEvent[]> {
    const first = this.#events[0]?.revision ?? 1n;
    const start = afterRevision < first ? 0 : Number(afterRevision - first) + 1;
    return this.#events.slice(start, start + limit);
  }

  oldestRevision(): bigint {
    return this.#events[0]?.revision ?? 1n;
  }

  async close(): Promise<void> {}
}
