/**
 * An unbounded queue that is also an async iterable: producers `push`, one consumer
 * iterates. The request side of a bidirectional stream, which connect-node reads as
 * an async iterable while the worker writes into it whenever it has something to say.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  /** Adds a value; returns false (and drops it) once the queue is closed. */
  push(value: T): boolean {
    if (this.#closed) return false;
    this.#items.push(value);
    this.#wake?.();
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
