import type { Clock, TimerHandle } from "../lib/clock.js";

interface Pending {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
}

/**
 * A {@link Clock} that moves only when told: {@link FakeClock.advance} runs the timers that
 * fall due, in time order, each at its own time.
 */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Map<object, Pending>();

  constructor(startMs = 1_800_000_000_000) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle = {} as TimerHandle;
    this.#timers.set(handle as object, { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn });
    return handle;
  }

  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle as object);
  }

  /** Timers not run yet. */
  get pending(): number {
    return this.#timers.size;
  }

  /**
   * Moves time `ms` forward without running any timer, as a stalled process (a GC pause, a
   * SIGSTOP) sees it: the timers that fell due meanwhile run late, at the next
   * {@link advance} (`advance(0)` runs them at once).
   */
  stall(ms: number): void {
    this.#now += ms;
  }

  /** Moves time `ms` forward, running every timer due by then (timers they set included). */
  advance(ms: number): void {
    const until = this.#now + ms;
    for (;;) {
      let next: [object, Pending] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at > until) continue;
        if (
          !next ||
          entry[1].at < next[1].at ||
          (entry[1].at === next[1].at && entry[1].seq < next[1].seq)
        ) {
          next = entry;
        }
      }
      if (!next) break;
      this.#timers.delete(next[0]);
      // Never backwards: after a stall, overdue timers run late, at the time it is now.
      this.#now = Math.max(this.#now, next[1].at);
      next[1].fn();
    }
    this.#now = until;
  }
}
