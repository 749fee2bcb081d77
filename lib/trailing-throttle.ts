import { type Clock, systemClock, type TimerHandle } from "./clock.js";

/**
 * Thins a fast stream of values (pull progress) to at most one per `everyMs`, trailing-edge:
 * a value offered while the window since the last one sent is open is held (only the latest
 * held one is kept) and sent when the window ends, so the last figure before a pause is
 * never lost. The first value, and one offered with `now`, is sent at once and replaces
 * whatever was held. {@link cancel} drops the held value when the stream has moved on (the
 * work ended, the task changed state): the owner must call it, or check in `send`, since a
 * value sent late must still be news.
 */
export class TrailingThrottle<T> {
  readonly #everyMs: number;
  readonly #send: (value: T) => void;
  readonly #clock: Clock;
  /** When a value was last sent; undefined before the first. */
  #lastMs: number | undefined;
  #held: { value: T } | undefined;
  #timer: TimerHandle | undefined;

  /** `clock` gives time and timers (a control plane's, a fake one in tests); the system's by default. */
  constructor(everyMs: number, send: (value: T) => void, clock: Clock = systemClock) {
    this.#everyMs = everyMs;
    this.#send = send;
    this.#clock = clock;
  }

  /** Sends `value` now if the window is over (or `now` is set), else holds it until it is. */
  offer(value: T, now = false): void {
    const at = this.#clock.now();
    // Capped: a clock set back must not hold a value longer than one window.
    const wait =
      this.#lastMs === undefined || now
        ? 0
        : Math.min(this.#everyMs, this.#lastMs + this.#everyMs - at);
    if (wait <= 0) {
      this.cancel();
      this.#emit(value, at);
      return;
    }
    this.#held = { value };
    this.#timer ??= this.#clock.setTimeout(() => {
      this.#timer = undefined;
      const held = this.#held;
      this.#held = undefined;
      if (held) this.#emit(held.value, this.#clock.now());
    }, wait);
  }

  /** Whether a value is held, waiting for the window to end. */
  get holding(): boolean {
    return this.#held !== undefined;
  }

  /** Drops the held value, if any: it is not sent. */
  cancel(): void {
    this.#held = undefined;
    if (this.#timer === undefined) return;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #emit(value: T, at: number): void {
    this.#lastMs = at;
    this.#send(value);
  }
}
