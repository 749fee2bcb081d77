/**
 * One consumer waiting for a producer's "something changed", with abort: the producer calls
 * {@link Waker.wake} (cheap when nobody waits), the consumer awaits {@link Waker.wait} in a
 * loop that re-checks its own condition.
 */
export class Waker {
  #wake: (() => void) | undefined;

  /** Wakes the waiting consumer, if any. */
  wake(): void {
    this.#wake?.();
  }

  /** Resolves at the next {@link wake}, or when `signal` aborts (at once if it has). */
  wait(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        signal.removeEventListener("abort", done);
        this.#wake = undefined;
        resolve();
      };
      this.#wake = done;
      signal.addEventListener("abort", done, { once: true });
    });
  }
}
