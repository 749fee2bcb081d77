import { EventEmitter } from "node:events";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  type EngineReport,
  EngineReportSchema,
  EngineStatus,
} from "../../gen/cube/v1/worker_pb.js";
import type { Logger } from "../../lib/logger.js";
import { type BackoffOptions, backoffDelay } from "../backoff.js";

/** While the engine is down, it is pinged every 100 ms at first, doubling up to 1 s: a ping is cheap, and every second of it delays healing. */
export const ENGINE_BACKOFF: BackoffOptions = { baseMs: 100, maxMs: 1000 };

/** What an {@link EngineMonitor} needs. */
export interface EngineMonitorOptions {
  /** Resolves when the engine answers, rejects with its words when it does not. */
  readonly ping: () => Promise<void>;
  readonly logger: Logger;
  readonly backoff?: BackoffOptions;
}

/**
 * Whether the worker's container engine answers. Signs that it went away — its event stream
 * broke, a call could not reach it — are {@link suspect}ed: the monitor pings it, and when it
 * does not answer the engine is DOWN and is pinged with back-off until it answers again.
 * Emits "change" with each new {@link EngineReport} (for the manager), and "up" when the
 * engine is back (the worker then re-syncs what it holds).
 */
export class EngineMonitor extends EventEmitter<{ change: [EngineReport]; up: [] }> {
  readonly #o: EngineMonitorOptions;
  #report: EngineReport;
  #checking = false;
  #closed = false;
  #wake: (() => void) | undefined;
  readonly #waiters = new Set<() => void>();

  constructor(options: EngineMonitorOptions) {
    super();
    this.#o = options;
    // Up until shown otherwise: the first call to the engine (the worker's recovery) tells.
    this.#report = create(EngineReportSchema, {
      status: EngineStatus.UP,
      since: timestampFromMs(Date.now()),
    });
  }

  /** The engine as last seen, for Register and the `engine` message. */
  get report(): EngineReport {
    return this.#report;
  }

  /** Whether the engine answers (as far as the monitor knows). */
  get up(): boolean {
    return this.#report.status === EngineStatus.UP;
  }

  /**
   * A sign that the engine may be gone (`reason` says which): it is pinged now, and if it
   * does not answer it is DOWN, and pinged with back-off until it does.
   */
  suspect(reason: string): void {
    if (this.#checking || this.#closed) return;
    this.#checking = true;
    void this.#check(reason);
  }

  async #check(reason: string): Promise<void> {
    for (let attempt = 0; !this.#closed; attempt++) {
      try {
        await this.#o.ping();
        break;
      } catch (error) {
        if (this.up) {
          const words = error instanceof Error && error.message ? error.message : reason;
          this.#set(EngineStatus.DOWN, words);
          this.#o.logger.warn(
            { reason: words, sign: reason },
            "container engine DOWN: waiting for it",
          );
        }
        await this.#sleep(backoffDelay(attempt, this.#o.backoff ?? ENGINE_BACKOFF));
      }
    }
    this.#checking = false;
    if (this.#closed || this.up) return;
    const since = this.#report.since;
    const downMs = since ? Date.now() - timestampMs(since) : undefined;
    this.#set(EngineStatus.UP, "");
    this.#o.logger.info({ downMs }, "container engine is back");
    for (const resolve of this.#waiters) resolve();
    this.#waiters.clear();
    this.emit("up");
  }

  /** Resolves once the engine answers (at once when it does), or the monitor is closed. */
  whenUp(): Promise<void> {
    if (this.up || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.add(resolve));
  }

  /** Stops pinging; whoever waits for the engine is let go. */
  close(): void {
    this.#closed = true;
    this.#wake?.();
    for (const resolve of this.#waiters) resolve();
    this.#waiters.clear();
  }

  #set(status: EngineStatus, reason: string): void {
    this.#report = create(EngineReportSchema, {
      status,
      reason,
      since: timestampFromMs(Date.now()),
    });
    this.emit("change", this.#report);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}
