import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type { PortBinding, Task, TaskState } from "../../gen/cube/v1/task_pb.js";
import { type TaskUpdate, TaskUpdateSchema } from "../../gen/cube/v1/worker_service_pb.js";
import type { WorkerStore } from "../store/worker-store.js";

/** An update as the task runner makes it; the outbox gives it its seq and time. */
export interface NewUpdate {
  readonly taskId: string;
  readonly generation: bigint;
  readonly state: TaskState;
  readonly containerId?: string;
  readonly ports?: readonly PortBinding[];
  readonly exitCode?: number;
  readonly reason?: string;
}

/** What else changes together with an update. */
export interface RecordChange {
  /** Task records to write in the same batch. */
  readonly putTasks?: readonly Task[];
  /** Task ids whose records go in the same batch. */
  readonly deleteTasks?: readonly string[];
}

/**
 * The updates the manager has not acknowledged yet, in seq order. An update is written
 * to LevelDB (synced, with the task record it describes) before anyone may send it,
 * and it stays there until an UpdateAck covers it: whatever happens to the stream or
 * the process, none is lost and they go up in the order they happened.
 */
export class Outbox {
  readonly #store: WorkerStore;
  readonly #pending: TaskUpdate[];
  readonly #listeners = new Set<() => void>();
  #lastSeq: bigint;
  /** The latest append, for {@link settled}. */
  #writes: Promise<unknown> = Promise.resolve();

  private constructor(store: WorkerStore, pending: TaskUpdate[]) {
    this.#store = store;
    this.#pending = pending;
    const last = pending.at(-1)?.seq ?? 0n;
    this.#lastSeq = last > store.lastSeq ? last : store.lastSeq;
  }

  /** Loads the kept updates of `store`. */
  static async open(store: WorkerStore): Promise<Outbox> {
    return new Outbox(store, await store.updates());
  }

  /**
   * Gives `update` the next seq and stores it durably together with `change`; resolves
   * with the stored update once it is on disk and visible to {@link pending}.
   */
  append(update: NewUpdate, change: RecordChange = {}): Promise<TaskUpdate> {
    this.#lastSeq += 1n;
    const stored = create(TaskUpdateSchema, {
      ...update,
      ports: [...(update.ports ?? [])],
      seq: this.#lastSeq,
      time: timestampNow(),
    });
    const lastSeq = this.#lastSeq;
    // Committed at once, so updates made together share one batch; made visible in seq
    // order because the store resolves its batches in the order the changes were made.
    const write = this.#store.commit({ ...change, updates: [stored], lastSeq }).then(() => {
      this.#pending.push(stored);
      this.#notify();
      return stored;
    });
    this.#writes = write.catch(() => undefined);
    return write;
  }

  /** Unacknowledged updates, lowest seq first (a live view: do not keep it). */
  pending(): readonly TaskUpdate[] {
    return this.#pending;
  }

  /** Highest seq given out so far. */
  get lastSeq(): bigint {
    return this.#lastSeq;
  }

  /** Forgets every update with seq ≤ `seq`: the manager has stored them. */
  async ack(seq: bigint): Promise<void> {
    let n = 0;
    while (n < this.#pending.length && (this.#pending[n]?.seq ?? 0n) <= seq) n++;
    if (n === 0) return;
    const dropped = this.#pending.splice(0, n);
    this.#notify();
    await this.#store.deleteUpdates(dropped.map((u) => u.seq));
  }

  /** Calls `listener` whenever updates are appended or acknowledged; returns the unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }

  /** Resolves once every write started so far is done. */
  async settled(): Promise<void> {
    await this.#writes;
  }
}
