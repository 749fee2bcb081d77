/**
 * Time as the manager's rules see it: now, and timers. Production uses {@link systemClock};
 * tests pass a fake one (test/fake-clock.ts) and move time by hand instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Runs `fn` once, `ms` from now; the handle cancels it. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer (a no-op for one that ran or was cleared). */
  clearTimeout(handle: TimerHandle): void;
}

/** A timer of a {@link Clock}: opaque to its users. */
export type TimerHandle = { readonly __timer: unique symbol } | NodeJS.Timeout;

/** The real clock: Date.now and Node's timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * The longest delay a Node timer takes: 2^31 - 1 ms, about 24.8 days. Node keeps delays in a
 * signed 32-bit integer, and `setTimeout` replaces a longer one with 1 ms (with a
 * TimeoutOverflowWarning), so a longer wait fires at once: refuse it, or wait in steps.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;
