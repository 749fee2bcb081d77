/**
 * Container exits, seen through ONE shared subscription to Docker's event stream (not
 * polling), so a `docker kill` is noticed within milliseconds however many tasks run.
 * Each waited container is also inspected once the subscription is up, and again after
 * every reconnect, so an exit that happened while nobody listened is not missed.
 */
import type { Readable } from "node:stream";
import type Docker from "dockerode";
import type { Logger } from "../../lib/logger.js";
import { DriverError, type ExitStatus } from "../tasks/driver.js";
import { exitReason, LABEL_WORKER } from "./container-spec.js";
import { withDeadline } from "./deadline.js";
import { isNotFound, isUnreachable } from "./errors.js";
import { onJsonLines } from "./json-lines.js";

interface Waiter {
  readonly promise: Promise<ExitStatus>;
  readonly resolve: (status: ExitStatus) => void;
}

interface DockerEvent {
  readonly Type?: string;
  readonly Action?: string;
  readonly id?: string;
  readonly time?: number;
  readonly Actor?: { ID?: string; Attributes?: Record<string, string> };
}

const MAX_RETRY_MS = 2000;
const MAX_OOM_REMEMBERED = 1000;
/** The exit code of a main process killed by SIGKILL, as the OOM killer sends. */
const SIGKILL_EXIT = 128 + 9;

/**
 * How long a memory-limited container's SIGKILL exit waits for Docker's "oom" event when
 * neither the event nor the inspect has told of one yet. containerd's shim sends the OOM and
 * the exit from separate goroutines, so the exit can come first; dockerd then leaves
 * State.OOMKilled false and only the late "oom" event tells (containerd#12714 orders them).
 */
export const OOM_EVENT_GRACE_MS = 500;

/** How long the inspect of a container that died may take before its die event decides. */
export const EXIT_INSPECT_TIMEOUT_MS = 5000;

/**
 * Resolves waits on container exits; calls `onDie` for every cube container that dies, and
 * `onStart` for every one that starts (labels as the event carries them).
 */
export class ExitWatcher {
  readonly #docker: Docker;
  readonly #onDie: (containerId: string) => void;
  readonly #logger: Logger | undefined;
  readonly #onBroken: ((reason: string) => void) | undefined;
  readonly #timeoutMs: number;
  readonly #onStart: ((containerId: string, labels: Record<string, string>) => void) | undefined;
  /** The label (a key, or key=value) the containers watched carry; default cube.worker. */
  readonly #label: string;
  readonly #waiters = new Map<string, Waiter>();
  /**
   * Containers Docker reported OOM-killed, the newest MAX_OOM_REMEMBERED: the event is the
   * only word of an OOM that came after the exit (see OOM_EVENT_GRACE_MS).
   */
  readonly #oomKilled = new Set<string>();
  /** Exits waiting for an "oom" event that may still come, by container. */
  readonly #oomAwaited = new Map<string, () => void>();
  /** Settles the waits of containers reported dead, one after another, in event order. */
  #dieOrder: Promise<void> = Promise.resolve();
  #stream: Readable | undefined;
  #connecting: Promise<void> | undefined;
  #retryMs = 100;
  #retryTimer: NodeJS.Timeout | undefined;
  #closed = false;

  /**
   * `onBroken` hears of every failure of the subscription (it ended, or could not open): a
   * sign that the engine may have gone away. `timeoutMs` (0: none) bounds the opening of the
   * subscription and each inspect of a waited container: an engine that does not answer them
   * must not hold a start, nor a wait, for good.
   */
  constructor(
    docker: Docker,
    onDie: (containerId: string) => void,
    logger?: Logger,
    onBroken?: (reason: string) => void,
    timeoutMs = 0,
    onStart?: (containerId: string, labels: Record<string, string>) => void,
    label: string = LABEL_WORKER,
  ) {
    this.#label = label;
    this.#onStart = onStart;
    this.#docker = docker;
    this.#onDie = onDie;
    this.#logger = logger;
    this.#onBroken = onBroken;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Resolves when the container exits, at once if it already has. A container that is
   * gone altogether resolves with exit code -1 and reason "container is gone".
   */
  wait(containerId: string): Promise<ExitStatus> {
    const existing = this.#waiters.get(containerId);
    if (existing) return existing.promise;
    let resolve!: (status: ExitStatus) => void;
    const promise = new Promise<ExitStatus>((r) => {
      resolve = r;
    });
    this.#waiters.set(containerId, { promise, resolve });
    // Subscribe first, inspect second: an exit between the two is then seen by one of them.
    void this.subscribe().then(() => this.#check(containerId));
    return promise;
  }

  /**
   * Whether Docker told of an OOM kill in the container (its "oom" event), which its inspect
   * may not show when the OOM came after the exit.
   */
  oomKilled(containerId: string): boolean {
    return this.#oomKilled.has(containerId);
  }

  /** Opens the event subscription if it is not open; resolves once it is (or failed, retrying). */
  subscribe(): Promise<void> {
    if (this.#closed || this.#stream) return Promise.resolve();
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #connect(): Promise<void> {
    let stream: Readable;
    // Only the opening is bounded: a signal still armed would end the stream when it fires.
    const opening = new AbortController();
    const timer =
      this.#timeoutMs > 0 ? setTimeout(() => opening.abort(), this.#timeoutMs) : undefined;
    try {
      stream = (await this.#docker.getEvents({
        filters: { type: ["container"], event: ["die", "oom", "start"], label: [this.#label] },
        abortSignal: opening.signal,
      })) as unknown as Readable;
    } catch (error) {
      this.#logger?.warn({ err: error }, "docker event stream failed to open; retrying");
      this.#retry();
      const words = opening.signal.aborted
        ? `no answer within ${this.#timeoutMs} ms`
        : (error as Error).message;
      this.#onBroken?.(`the event stream could not open: ${words}`);
      return;
    } finally {
      clearTimeout(timer);
    }
    if (this.#closed) {
      stream.destroy();
      return;
    }
    this.#retryMs = 100;
    this.#stream = stream;
    onJsonLines(stream, (line) => this.#onLine(line));
    const broken = () => {
      if (this.#stream !== stream) return;
      this.#stream = undefined;
      if (this.#closed) return;
      this.#logger?.warn("docker event stream ended; reconnecting");
      this.#retry();
      this.#onBroken?.("the event stream ended");
    };
    stream.on("end", broken);
    stream.on("close", broken);
    stream.on("error", broken);
  }

  #retry(): void {
    if (this.#closed || this.#retryTimer) return;
    const delay = this.#retryMs;
    this.#retryMs = Math.min(this.#retryMs * 2, MAX_RETRY_MS);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      // Exits that happened while disconnected are found by inspecting every waited container.
      void this.subscribe().then(() => {
        for (const id of this.#waiters.keys()) void this.#check(id);
      });
    }, delay);
    // Idle, the retry must not keep the process alive; with exits awaited it has to, as the
    // open stream it replaces would have.
    if (this.#waiters.size === 0) this.#retryTimer.unref();
  }

  #onLine(line: string): void {
    let event: DockerEvent;
    try {
      event = JSON.parse(line) as DockerEvent;
    } catch {
      this.#logger?.warn({ line }, "unreadable docker event");
      return;
    }
    const id = event.Actor?.ID ?? event.id;
    if (!id) return;
    if (event.Action === "oom") {
      // Bounded, the oldest forgotten first, so a long-running worker does not grow it.
      if (this.#oomKilled.size >= MAX_OOM_REMEMBERED) {
        const oldest = this.#oomKilled.values().next().value;
        if (oldest !== undefined) this.#oomKilled.delete(oldest);
      }
      this.#oomKilled.add(id);
      this.#oomAwaited.get(id)?.();
      return;
    }
    if (event.Action === "start") {
      this.#onStart?.(id, event.Actor?.Attributes ?? {});
      return;
    }
    if (event.Action !== "die") return;
    this.#onDie(id);
    if (!this.#waiters.has(id)) return;
    const code = Number(event.Actor?.Attributes?.exitCode ?? Number.NaN);
    const timeMs = event.time ? event.time * 1000 : Date.now();
    // Inspected at once, all of them, but settled in the order the containers died: one
    // inspect answered before an earlier one must not report its exit first.
    const status = this.#exitStatus(
      id,
      Number.isNaN(code) ? undefined : { exitCode: code, timeMs },
    );
    this.#dieOrder = this.#dieOrder
      .then(() => status)
      .then((s) => {
        if (s === "no-answer") void this.#check(id);
        else if (s) this.#settle(id, s);
      });
  }

  /**
   * Inspects a waited container; settles its wait when it has exited. An inspect the engine
   * did not answer in time tells nothing: it is tried again after a pause.
   */
  async #check(id: string): Promise<void> {
    const status = await this.#exitStatus(id);
    if (status === "no-answer") {
      setTimeout(() => {
        if (!this.#closed) void this.#check(id);
      }, MAX_RETRY_MS);
      return;
    }
    if (status) this.#settle(id, status);
  }

  /**
   * How a waited container exited (from inspect, or per its die event when inspect lags or
   * the container is already gone); undefined while it runs. Never rejects.
   */
  async #exitStatus(
    id: string,
    died?: { exitCode: number; timeMs: number },
  ): Promise<ExitStatus | "no-answer" | undefined> {
    if (!this.#waiters.has(id)) return undefined;
    try {
      // Bounded: exits settle in die order, so one inspect that hangs would hold back every
      // exit after it. Past the bound the die event's own figures stand. A check without one
      // has the runtime request timeout, and past it is tried again (see #check).
      const info = await withDeadline(
        `the inspect of container ${id}`,
        died ? EXIT_INSPECT_TIMEOUT_MS : this.#timeoutMs,
        (o) => this.#docker.getContainer(id).inspect(o),
      );
      const state = info.State;
      if (!state.Running && (state.Status === "exited" || state.Status === "dead")) {
        const finished = Date.parse(state.FinishedAt);
        const limited = (info.HostConfig?.Memory ?? 0) > 0;
        const oom =
          state.OOMKilled ||
          (died !== undefined && limited && (await this.#oomEvent(id, state.ExitCode)));
        return {
          exitCode: state.ExitCode,
          reason: exitReason(state.ExitCode, oom),
          finishedAtMs: Number.isNaN(finished) ? Date.now() : finished,
        };
      }
    } catch (error) {
      if (isNotFound(error) && !died) {
        return { exitCode: -1, reason: "container is gone", finishedAtMs: Date.now() };
      }
      if (error instanceof DriverError && !died) return "no-answer";
      // An engine that is away says so once, through the engine monitor, not per container.
      if (!died && !isUnreachable(error)) {
        this.#logger?.warn({ err: error, containerId: id }, "inspect after exit failed");
      }
    }
    // The event is authoritative even when inspect lags or the container was removed at once.
    if (!died) return undefined;
    return {
      exitCode: died.exitCode,
      // Not waited on: an inspect that failed has mostly taken its deadline already.
      reason: exitReason(died.exitCode, this.#oomKilled.has(id)),
      finishedAtMs: died.timeMs,
    };
  }

  /**
   * Whether the container's "oom" event came, or comes within OOM_EVENT_GRACE_MS when the
   * exit is a SIGKILL's (what the OOM killer sends): other exits are not waited on.
   */
  #oomEvent(id: string, exitCode: number): Promise<boolean> {
    if (this.#oomKilled.has(id)) return Promise.resolve(true);
    if (exitCode !== SIGKILL_EXIT || this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (oom: boolean) => {
        clearTimeout(timer);
        if (this.#oomAwaited.get(id) === heard) this.#oomAwaited.delete(id);
        resolve(oom);
      };
      const heard = () => done(true);
      const timer = setTimeout(() => done(false), OOM_EVENT_GRACE_MS);
      this.#oomAwaited.set(id, heard);
    });
  }

  #settle(id: string, status: ExitStatus): void {
    const waiter = this.#waiters.get(id);
    if (!waiter) return;
    this.#waiters.delete(id);
    waiter.resolve(status);
  }

  /** Ends the subscription; pending waits stay pending. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#stream?.destroy();
    this.#stream = undefined;
  }
}
