import { EventEmitter } from "node:events";
import { isIP, connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import {
  type Assignment,
  type ConnectRequest,
  ConnectRequestSchema,
  type ConnectResponse,
  type HealthReport,
  HeartbeatSchema,
  type InventoryItem,
  InventorySchema,
  type Leaving,
  LeavingSchema,
  RegisterSchema,
  WorkerService,
} from "../../gen/cube/v1/worker_service_pb.js";
import type { Logger } from "../../lib/logger.js";
import { bearer, tlsOptions } from "../../lib/rpc/client.js";
import type { ClientTls } from "../../lib/tls/identity.js";
import { AsyncQueue } from "../async-queue.js";
import { type BackoffOptions, backoffDelay, RECONNECT_BACKOFF } from "../backoff.js";
import type { LiveMessage } from "../tasks/task-runner.js";
import type { Outbox } from "./outbox.js";

/** What a {@link StreamClient} needs. */
export interface StreamClientOptions {
  /** The manager's host:port (or URL). */
  readonly manager: string;
  /**
   * The worker's credential (a worker token bound to its id), sent as a bearer token on the
   * stream; a function is asked before each dial (it may join first: worker/stream/join.ts).
   */
  readonly token?: string | (() => Promise<string | undefined>);
  /**
   * TLS towards the manager (the CA, the worker's certificate and key), asked after `token`
   * before each dial; undefined: plaintext (h2c).
   */
  readonly tls?: () => ClientTls | undefined;
  readonly outbox: Outbox;
  readonly logger: Logger;
  /** The Register message, built afresh for each connection. */
  readonly register: () => MessageInitShape<typeof RegisterSchema>;
  /** What the worker holds now, sent after the replay. */
  readonly inventory: () => InventoryItem[];
  /** Current health of checked tasks, re-sent after the inventory. */
  readonly healthReports: () => HealthReport[];
  /** Called with each assignment, in the order the manager sent them. */
  readonly onAssignment: (assignment: Assignment) => void;
  /** HTTP/2 ping period: how fast a dead network (no FIN) is noticed. Default 1 s. */
  readonly pingIntervalMs?: number;
  /**
   * How long a ping may go unanswered before the connection is dropped. Default: the
   * heartbeat timeout the manager gave on the last connection, 2 s before any. With 1 s, a
   * saturated host (1,000 hollow workers in the benchmark) dropped hundreds of healthy
   * streams a minute and their tasks moved.
   */
  readonly pingTimeoutMs?: number;
  readonly backoff?: BackoffOptions;
}

/** How long the manager may take to answer Register. */
const REGISTER_TIMEOUT_MS = 10_000;
/** How long a dial may wait for the TCP handshake (TLS and register come after). */
const CONNECT_TIMEOUT_MS = 1000;

/**
 * The worker's side of WorkerService.Connect. It dials the manager and, on every
 * (re)connect, sends Register, then every update the manager has not acknowledged (in
 * seq order), then the inventory; after that, new updates as the outbox gets them,
 * live messages through {@link send}, and a heartbeat whenever it has been quiet for
 * the interval the manager asked for. A dead manager is noticed by the stream failing,
 * by HTTP/2 pings, or by its heartbeats stopping (once it has sent any); the client
 * then dials again with jittered exponential back-off (100 ms → 1 s) until closed.
 *
 * Emits "connected" (after the inventory went out) and "disconnected" (with a reason).
 */
export class StreamClient extends EventEmitter<{
  connected: [];
  disconnected: [reason: string];
}> {
  readonly #o: StreamClientOptions;
  readonly #log: Logger;
  readonly #stop = new AbortController();
  #out: AsyncQueue<ConnectRequest> | undefined;
  #live = false;
  #loop: Promise<void> | undefined;
  #abortCurrent: ((reason: string) => void) | undefined;
  /** The manager's heartbeat timeout, from the last Registered. */
  #managerTimeoutMs: number | undefined;

  constructor(options: StreamClientOptions) {
    super();
    this.#o = options;
    this.#log = options.logger;
  }

  /** Starts dialling; returns at once. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Whether the stream is up and past its replay, so live messages go through. */
  get connected(): boolean {
    return this.#live;
  }

  /** Sends a live message if connected; returns false (dropping it) otherwise. */
  send(message: LiveMessage): boolean {
    if (!this.#live || !this.#out) return false;
    return this.#out.push(create(ConnectRequestSchema, { message }));
  }

  /**
   * Waits until the manager has acknowledged every update, the stream drops, or
   * `timeoutMs` passes; resolves with whether the outbox is empty.
   */
  async flush(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.#o.outbox.pending().length > 0 && this.#live && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          off();
          this.off("disconnected", done);
          resolve();
        };
        const timer = setTimeout(done, deadline - Date.now());
        const off = this.#o.outbox.subscribe(done);
        this.once("disconnected", done);
      });
    }
    return this.#o.outbox.pending().length === 0;
  }

  /**
   * Ends the stream (half-close first, so the manager sees a clean end) and stops dialling.
   * With `goodbye`, a Leaving message goes up first, when connected: whether the worker is
   * restarting decides how long the manager waits before it replaces the worker's tasks.
   */
  async close(
    timeoutMs = 1000,
    goodbye?: Omit<MessageInitShape<typeof LeavingSchema>, "$typeName">,
  ): Promise<void> {
    if (goodbye && this.#live && this.#out) {
      const value: Leaving = create(LeavingSchema, goodbye);
      this.#out.push(create(ConnectRequestSchema, { message: { case: "leaving", value } }));
    }
    this.#stop.abort();
    this.#out?.close();
    if (!this.#loop) return;
    const timer = setTimeout(() => this.#abortCurrent?.("worker closing"), timeoutMs);
    await this.#loop;
    clearTimeout(timer);
  }

  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#stop.signal.aborted) {
      const { reason, registered } = await this.#connectOnce();
      if (registered) attempt = 0;
      this.emit("disconnected", reason);
      if (this.#stop.signal.aborted) break;
      const delay = Math.round(backoffDelay(attempt++, this.#o.backoff ?? RECONNECT_BACKOFF));
      this.#log.warn({ reason, retryInMs: delay }, "manager stream down; dialling again");
      await sleep(delay, this.#stop.signal);
    }
  }

  async #connectOnce(): Promise<{ reason: string; registered: boolean }> {
    let token: string | undefined;
    try {
      token = typeof this.#o.token === "function" ? await this.#o.token() : this.#o.token;
    } catch (error) {
      return { reason: `cannot join the manager: ${(error as Error).message}`, registered: false };
    }
    const tls = this.#o.tls?.();
    const baseUrl = /^https?:\/\//.test(this.#o.manager)
      ? this.#o.manager
      : `${tls ? "https" : "http"}://${this.#o.manager}`;
    const pingIntervalMs = this.#o.pingIntervalMs ?? 1000;
    // One session (and socket) per connection, so a dead one is thrown away with its
    // pings. Two connect-node 2.1.2 traps: a session that got GOAWAY keeps pinging
    // when idle, and a ping on it once destroyed throws out of a timer; and
    // Http2SessionManager.abort() after a ping timeout drops the session's error
    // listener before the error is emitted. Either crashes the process. Hence no idle
    // pings, and we end a connection by destroying our own socket, never by abort().
    const sockets = new Set<Socket>();
    const session = new Http2SessionManager(
      baseUrl,
      {
        pingIntervalMs,
        pingTimeoutMs: this.#o.pingTimeoutMs ?? this.#managerTimeoutMs ?? 2000,
        pingIdleConnection: false,
      },
      {
        createConnection: (url: URL) => {
          const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
          const socket = tls
            ? tlsConnect({
                host,
                port: Number(url.port || 443),
                ...tlsOptions(tls),
                ALPNProtocols: ["h2"],
                ...(isIP(host) ? {} : { servername: host }),
              })
            : netConnect(Number(url.port || 80), url.hostname);
          socket.setNoDelay(true);
          // A SYN into a partition waits for the kernel's retransmits (1 s, 3 s, 7 s…), long
          // after the link is back; a fresh dial finds the manager as soon as it answers.
          const connectTimer = setTimeout(
            () => socket.destroy(new Error(`no TCP connection within ${CONNECT_TIMEOUT_MS} ms`)),
            CONNECT_TIMEOUT_MS,
          );
          socket.once("connect", () => clearTimeout(connectTimer));
          socket.once("close", () => clearTimeout(connectTimer));
          sockets.add(socket);
          return socket;
        },
      },
    );
    const client = createClient(
      WorkerService,
      // No compression: on a LAN, gzip of every batch costs the manager more CPU than it saves.
      createGrpcTransport({
        baseUrl,
        sessionManager: session,
        acceptCompression: [],
        interceptors: token ? [bearer(token)] : [],
      }),
    );
    const abort = new AbortController();
    let abortReason = "";
    this.#abortCurrent = (why) => {
      abortReason ||= why;
      abort.abort();
    };
    const out = new AsyncQueue<ConnectRequest>({ pack: packRequests });
    this.#out = out;
    if (this.#stop.signal.aborted) out.close();
    let lastSent = Date.now();
    let lastHeard = Date.now();
    let managerBeats = false;
    let heartbeatMs = 500;
    let silentMs = 2000;
    let registered = false;
    let sentSeq = 0n;
    const push = (message: ConnectRequest["message"]) => {
      out.push(create(ConnectRequestSchema, { message }));
      lastSent = Date.now();
    };
    // The only path by which updates go up, so they leave in seq order.
    const drain = () => {
      for (const update of this.#o.outbox.pending()) {
        if (update.seq <= sentSeq) continue;
        push({ case: "update", value: update });
        sentSeq = update.seq;
      }
    };
    const startedAt = Date.now();
    const check = () => {
      const now = Date.now();
      if (!registered) {
        if (now - startedAt > REGISTER_TIMEOUT_MS) this.#abortCurrent?.("no answer to register");
        return;
      }
      if (managerBeats && now - lastHeard > silentMs) {
        this.#abortCurrent?.(`manager silent for ${now - lastHeard} ms`);
      } else if (now - lastSent >= heartbeatMs && !out.closed) {
        push({ case: "heartbeat", value: create(HeartbeatSchema, { time: timestampNow() }) });
      }
    };
    // Every 100 ms until registered; then a quarter heartbeat (at most 500 ms): a thousand
    // workers in one process ticking ten times a second was a measurable share of its CPU.
    let tick = setInterval(check, 100);
    let unsubscribe = () => {};
    push({
      case: "register",
      value: create(RegisterSchema, { ...this.#o.register(), acceptsBatch: true }),
    });
    try {
      const handle = (res: ConnectResponse) => {
        const m = res.message;
        if (m.case === "registered" && !registered) {
          registered = true;
          heartbeatMs = m.value.heartbeatInterval ? durationMs(m.value.heartbeatInterval) : 500;
          if (!(heartbeatMs > 0)) heartbeatMs = 500;
          const timeout = m.value.heartbeatTimeout ? durationMs(m.value.heartbeatTimeout) : 0;
          silentMs = timeout > 0 ? timeout : Math.max(4 * heartbeatMs, 2000);
          this.#managerTimeoutMs = timeout > 0 ? timeout : undefined;
          clearInterval(tick);
          tick = setInterval(check, Math.min(500, Math.max(100, heartbeatMs / 4)));
          sentSeq = m.value.lastUpdateSeq;
          this.#ack(sentSeq);
          drain();
          push({
            case: "inventory",
            value: create(InventorySchema, { items: this.#o.inventory() }),
          });
          for (const report of this.#o.healthReports()) push({ case: "health", value: report });
          unsubscribe = this.#o.outbox.subscribe(drain);
          this.#live = !out.closed;
          this.#log.info(
            { manager: this.#o.manager, replayed: this.#o.outbox.pending().length },
            "connected to the manager",
          );
          this.emit("connected");
        } else if (m.case === "assignment") {
          this.#o.onAssignment(m.value);
        } else if (m.case === "updateAck") {
          this.#ack(m.value.seq);
        } else if (m.case === "heartbeat") {
          managerBeats = true;
        } else if (m.case === "batch") {
          for (const inner of m.value.messages) if (inner.message.case !== "batch") handle(inner);
        }
      };
      for await (const res of client.connect(out, { signal: abort.signal })) {
        lastHeard = Date.now();
        handle(res);
      }
      return { reason: abortReason || "the manager ended the stream", registered };
    } catch (error) {
      return { reason: abortReason || ConnectError.from(error).message, registered };
    } finally {
      this.#live = false;
      unsubscribe();
      clearInterval(tick);
      out.close();
      abort.abort();
      for (const socket of sockets) socket.destroy();
      this.#abortCurrent = undefined;
    }
  }

  #ack(seq: bigint): void {
    this.#o.outbox.ack(seq).catch((error: unknown) => {
      this.#log.error({ err: error }, "could not drop acknowledged updates");
    });
  }
}

/** Several requests as one frame (they are applied in order). */
function packRequests(messages: ConnectRequest[]): ConnectRequest {
  return {
    $typeName: "cube.v1.ConnectRequest",
    message: { case: "batch", value: { $typeName: "cube.v1.ConnectRequestBatch", messages } },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
