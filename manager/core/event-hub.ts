import type { TaskEvent } from "../../gen/cube/v1/task_pb.js";
import { Waker } from "../../lib/waker.js";

/**
 * One watcher's queue. The hub never waits for it: when it holds `limit` events the watcher
 * is cut off (`overflowed`) and must resume from the last revision it saw.
 */
export class EventWatcher {
  /** True once the watcher fell `limit` events behind; nothing more is queued. */
  overflowed = false;
  #queue: TaskEvent[] = [];
  readonly #waker = new Waker();
  readonly #limit: number;
  readonly #taskId: string | undefined;
  readonly #onClose: (w: EventWatcher) => void;

  constructor(limit: number, taskId: string | undefined, onClose: (w: EventWatcher) => void) {
    this.#limit = limit;
    this.#taskId = taskId;
    this.#onClose = onClose;
  }

  /** Called by the hub for every published event. O(1). */
  offer(event: TaskEvent): void {
    if (this.overflowed) return;
    if (this.#taskId !== undefined && event.task?.id !== this.#taskId) return;
    if (this.#queue.length >= this.#limit) {
      this.overflowed = true;
      this.#queue = [];
      this.#onClose(this);
    } else {
      this.#queue.push(event);
    }
    this.#waker.wake();
  }

  /**
   * Everything queued, waiting for at least one event unless `signal` aborts (then []);
   * `undefined` once the watcher overflowed.
   */
  async take(signal: AbortSignal): Promise<TaskEvent[] | undefined> {
    while (this.#queue.length === 0 && !this.overflowed && !signal.aborted) {
      await this.#waker.wait(signal);
    }
    if (this.overflowed) return undefined;
    const out = this.#queue;
    this.#queue = [];
    return out;
  }

  /** Stops receiving events. */
  close(): void {
    this.#onClose(this);
  }
}

/**
 * Fans committed task events out to watchers, and keeps the latest `historySize` in memory
 * so that a watcher resuming from a recent revision needs no disk read. Publishing costs
 * O(watchers) and never blocks.
 */
export class EventHub {
  /** Revision of the last published event. */
  lastRevision: bigint;
  readonly #ring: (TaskEvent | undefined)[];
  #next = 0;
  #count = 0;
  readonly #watchers = new Set<EventWatcher>();

  constructor(historySize: number, lastRevision: bigint) {
    this.#ring = new Array(Math.max(1, historySize));
    this.lastRevision = lastRevision;
  }

  /** Number of open watchers. */
  get watcherCount(): number {
    return this.#watchers.size;
  }

  publish(event: TaskEvent): void {
    this.#ring[this.#next] = event;
    this.#next = (this.#next + 1) % this.#ring.length;
    this.#count = Math.min(this.#count + 1, this.#ring.length);
    this.lastRevision = event.revision;
    for (const w of this.#watchers) w.offer(event);
  }

  /**
   * The published events after `revision`, oldest first, or undefined when memory does not
   * reach back that far (read the store then).
   */
  since(revision: bigint): TaskEvent[] | undefined {
    if (revision >= this.lastRevision) return [];
    const oldest = this.#at(0);
    if (!oldest || oldest.revision > revision + 1n) return undefined;
    const skip = Number(revision - oldest.revision) + 1;
    const out: TaskEvent[] = [];
    for (let i = skip; i < this.#count; i++) out.push(this.#at(i) as TaskEvent);
    return out;
  }

  /** A new watcher of every event published from now on (of one task when `taskId` is set). */
  subscribe(bufferSize: number, taskId?: string): EventWatcher {
    const watcher = new EventWatcher(bufferSize, taskId, (w) => this.#watchers.delete(w));
    this.#watchers.add(watcher);
    return watcher;
  }

  #at(i: number): TaskEvent | undefined {
    const start = (this.#next - this.#count + this.#ring.length) % this.#ring.length;
    return this.#ring[(start + i) % this.#ring.length];
  }
}
