/** How an {@link AsyncQueue} may merge what waits in it. */
export interface QueueOptions<T> {
  /**
   * Merges several waiting values into one (called with two or more, in order). When
   * set, the consumer wakes one event-loop turn after the first push, so everything
   * pushed in that turn leaves as one value.
   */
  readonly pack?: (values: T[]) => T;
}

/**
 * An unbounded queue that is also an async iterable: producers `push`, one consumer
 * iterates. The request side of a bidirectional stream, which connect-node reads as
 * an async iterable while the worker writes into it whenever it has something to say.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  #items: T[] = [];
  readonly #pack: ((values: T[]) => T) | undefined;
  #wake: (() => void) | undefined;
  #wakeQueued = false;
  #closed = false;

  constructor(options: QueueOptions<T> = {}) {
    this.#pack = options.pack;
  }

  /** Adds a value; returns false (and drops it) once the queue is closed. */
  push(value: T): boolean {
    if (this.#closed) return false;
    this.#items.push(value);
    if (!this.#pack) this.#wake?.();
    else if (!this.#wakeQueued) {
      this.#wakeQueued = true;
      setImmediate(() => {
        this.#wakeQueued = false;
        this.#wake?.();
      });
    }
    return true;
  }

  /** Ends the iteration after the values already pushed. */
  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.#pack && this.#items.length > 1) {
        const values = this.#items;
        this.#items = [];
        yield this.#pack(values);
        continue;
      }
      const item = this.#items.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (this.#closed) return;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = undefined;
    }
  }
}
