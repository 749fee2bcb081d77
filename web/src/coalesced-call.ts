/**
 * A call made on request, one at a time: requests that come while it runs fold into a single
 * run after it. However fast they come (a drain moving a hundred tasks changes a worker a
 * hundred times), at most one call is in flight and at most one waits, and the last request
 * is always followed by a call that started after it.
 */
export class CoalescedCall {
  #running = false;
  #again = false;
  readonly #closed = new AbortController();

  /** `call` gets a signal that aborts on {@link close}; it should not reject (say errors itself). */
  constructor(private readonly call: (signal: AbortSignal) => Promise<void>) {}

  /** Calls now, or once the call in flight has ended. */
  request(): void {
    if (this.#closed.signal.aborted) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    const done = () => {
      this.#running = false;
      if (!this.#again) return;
      this.#again = false;
      this.request();
    };
    this.call(this.#closed.signal).then(done, done);
  }

  /** Aborts the call in flight; later requests do nothing. */
  close(): void {
    this.#closed.abort();
  }
}
