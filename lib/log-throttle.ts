import { type Clock, systemClock, type TimerHandle } from "./clock.js";
import type { Logger } from "./logger.js";

/**
 * Warnings of one kind (a server's "call refused"), at most `perSecond` lines a second: a
 * client hammering a port without a token costs the log that many lines, not one per
 * request. What is left out is counted, and the count logged in one line once its second is
 * over ("call refused: 4,980 more in that second, not logged").
 */
export class LogThrottle {
  readonly #clock: Clock;
  /** When the current second began; -Infinity before the first line. */
  #since = Number.NEGATIVE_INFINITY;
  #logged = 0;
  #left = 0;
  #timer: TimerHandle | undefined;

  constructor(
    readonly logger: Logger,
    readonly message: string,
    readonly perSecond: number,
    clock: Clock = systemClock,
  ) {
    this.#clock = clock;
  }

  /** Logs `fields` with the message, unless this second has had its lines already. */
  warn(fields: Record<string, unknown>): void {
    const now = this.#clock.now();
    if (now - this.#since >= 1000) {
      this.#flush();
      this.#since = now;
      this.#logged = 0;
    }
    if (this.#logged < this.perSecond) {
      this.#logged++;
      this.logger.warn(fields, this.message);
      return;
    }
    this.#left++;
    if (this.#timer === undefined) {
      this.#timer = this.#clock.setTimeout(() => this.#flush(), this.#since + 1000 - now);
      // A count still to log must not keep a process that is done from exiting.
      (this.#timer as { unref?: () => void }).unref?.();
    }
  }

  #flush(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#left === 0) return;
    this.logger.warn(
      { notLogged: this.#left },
      `${this.message}: ${this.#left.toLocaleString("en-US")} more in that second, not logged`,
    );
    this.#left = 0;
  }
}
