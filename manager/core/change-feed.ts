/**
 * Tells subscribers which keys (worker ids) changed since they last looked. A subscriber's
 * backlog is a set of keys, so it is bounded by the number of workers however slow the
 * subscriber is, and notifying never blocks.
 */
import { Waker } from "../../lib/waker.js";

export class ChangeFeed {
  readonly #subs = new Set<Subscription>();

  /** Marks `key` changed for every subscriber. */
  notify(key: string): void {
    for (const s of this.#subs) s.mark(key);
  }

  /** A new subscription; close it when done. */
  subscribe(): Subscription {
    const sub = new Subscription(() => this.#subs.delete(sub));
    this.#subs.add(sub);
    return sub;
  }
}

/** One subscriber's set of changed keys. */
export class Subscription {
  #dirty = new Set<string>();
  readonly #waker = new Waker();
  readonly #onClose: () => void;

  constructor(onClose: () => void) {
    this.#onClose = onClose;
  }

  mark(key: string): void {
    this.#dirty.add(key);
    this.#waker.wake();
  }

  /** The keys changed since the last call, waiting for one; [] once `signal` aborts. */
  async changed(signal: AbortSignal): Promise<string[]> {
    while (this.#dirty.size === 0 && !signal.aborted) {
      await this.#waker.wait(signal);
    }
    if (signal.aborted) return [];
    const keys = [...this.#dirty];
    this.#dirty = new Set();
    return keys;
  }

  close(): void {
    this.#onClose();
  }
}
