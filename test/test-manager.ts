/**
 * A small but real manager for worker tests: a connect-node server on port 0 that
 * implements WorkerService.Connect, records every message a worker sends, stores
 * updates the way the real manager must (in seq order, acking cumulatively), and lets
 * a test push assignments, cut the stream, refuse connections or go away entirely.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Task, TaskSchema, type TaskSpecSchema } from "../gen/cube/v1/task_pb.js";
import {
  AssignmentAction,
  type ConnectRequest,
  type ConnectResponse,
  ConnectResponseSchema,
  file_cube_v1_worker_service,
  type TaskUpdate,
  WorkerService,
} from "../gen/cube/v1/worker_service_pb.js";
import { type Server, startServer } from "../lib/rpc/server.js";
import { AsyncQueue } from "../worker/async-queue.js";

type UpCase = NonNullable<ConnectRequest["message"]["case"]>;
type UpValue<K extends UpCase> = Extract<ConnectRequest["message"], { case: K }>["value"];

/** One message received from a worker. */
export interface Received {
  /** Date.now() when it arrived. */
  readonly at: number;
  /** Which connection (1, 2, …) it came on. */
  readonly connection: number;
  readonly message: ConnectRequest["message"];
}

/** How the test manager behaves. */
export interface TestManagerOptions {
  /** Heartbeat interval given to workers in Registered; default 500 ms. */
  heartbeatIntervalMs?: number;
  /** Send heartbeats down the stream; default true. */
  sendHeartbeats?: boolean;
  /** Ack every stored update at once; default true. */
  autoAck?: boolean;
}

interface Connection {
  readonly n: number;
  readonly out: AsyncQueue<ConnectResponse>;
  workerId: string;
  cut?: ConnectError;
}

/** The test manager. Start it with {@link TestManager.start}. */
export class TestManager {
  /** Every message received, in arrival order, across connections. */
  readonly received: Received[] = [];
  /** Updates stored: each seq once, in seq order. */
  readonly stored: TaskUpdate[] = [];
  /** Updates that arrived again after being stored (harmless replays). */
  readonly duplicates: TaskUpdate[] = [];
  /** Problems a correct worker never causes: seq gaps, out-of-order updates. */
  readonly violations: string[] = [];
  /** Highest stored seq per worker: what Registered.last_update_seq says. */
  readonly lastSeq = new Map<string, bigint>();
  /** Connections opened so far. */
  connections = 0;
  autoAck: boolean;
  /** When set, nothing goes down the stream (no heartbeats, no acks), though it stays open. */
  muted = false;
  #options: TestManagerOptions;
  #server: Server | undefined;
  #port = 0;
  #current: Connection | undefined;
  #refuseUntil = 0;
  readonly #waiters = new Set<() => void>();

  private constructor(options: TestManagerOptions) {
    this.#options = options;
    this.autoAck = options.autoAck ?? true;
  }

  /** Starts a test manager on 127.0.0.1, port 0. */
  static async start(options: TestManagerOptions = {}): Promise<TestManager> {
    const m = new TestManager(options);
    await m.#listen();
    return m;
  }

  /** host:port the manager listens on (kept across {@link stop}/{@link restart}). */
  get address(): string {
    return `127.0.0.1:${this.#port}`;
  }

  /** Whether a worker is connected and registered now. */
  get connected(): boolean {
    return this.#current?.workerId !== undefined && this.#current.workerId !== "";
  }

  /** Messages of one kind, in arrival order. */
  messages<K extends UpCase>(kind: K): UpValue<K>[] {
    const out: UpValue<K>[] = [];
    for (const r of this.received) {
      if (r.message.case === kind) out.push(r.message.value as UpValue<K>);
    }
    return out;
  }

  /** Sends RUN for `task` (generation 1 unless set); returns Date.now() at sending. */
  run(task: {
    id: string;
    spec: MessageInitShape<typeof TaskSpecSchema>;
    generation?: bigint;
  }): number {
    return this.#assign(AssignmentAction.RUN, create(TaskSchema, { generation: 1n, ...task }));
  }

  /** Sends STOP for a task; returns Date.now() at sending. */
  stop(taskId: string, graceMs = 1000): number {
    return this.#assign(
      AssignmentAction.STOP,
      create(TaskSchema, { id: taskId }),
      durationFromMs(graceMs),
    );
  }

  /** Sends a raw assignment (for bad-input tests). */
  send(message: ConnectResponse["message"]): void {
    const c = this.#current;
    if (!c) throw new Error("no worker is connected");
    c.out.push(create(ConnectResponseSchema, { message }));
  }

  /** Acks every stored update up to `seq` for the connected worker. */
  ack(seq: bigint): void {
    this.send({ case: "updateAck", value: { seq, $typeName: "cube.v1.UpdateAck" } });
  }

  /** Ends the current stream with UNAVAILABLE, as a manager that drops a worker would. */
  cut(): void {
    const c = this.#current;
    if (!c) return;
    c.cut = new ConnectError("stream cut by the test", Code.Unavailable);
    c.out.close();
  }

  /** Answers new connections with UNAVAILABLE for `ms`. */
  refuse(ms: number): void {
    this.#refuseUntil = Date.now() + ms;
  }

  /** Closes the server (connections refused until {@link restart}); keeps what it stored. */
  async stopServer(): Promise<void> {
    this.cut();
    await this.#server?.close();
    this.#server = undefined;
  }

  /** Listens again on the same port. */
  async restart(): Promise<void> {
    await this.#listen();
  }

  /**
   * Resolves with the first truthy value of `probe`, checked now and after every
   * message; rejects after `timeoutMs` with `what` in the message.
   */
  waitFor<T>(probe: () => T | undefined | false, timeoutMs: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const value = probe();
        if (!value) return false;
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve(value);
        return true;
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  /** Resolves with the first stored update of `taskId` (optionally in `state`) after index `from`. */
  waitForUpdate(
    match: (u: TaskUpdate) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<{ update: TaskUpdate; at: number }> {
    return this.waitFor(
      () => {
        for (const r of this.received) {
          if (r.message.case === "update" && match(r.message.value)) {
            return { update: r.message.value, at: r.at };
          }
        }
        return undefined;
      },
      timeoutMs,
      what,
    );
  }

  /** Stops the server. */
  async close(): Promise<void> {
    await this.stopServer();
  }

  #assign(action: AssignmentAction, task: Task, stopGrace?: ReturnType<typeof durationFromMs>) {
    this.send({
      case: "assignment",
      value: { $typeName: "cube.v1.Assignment", action, task, stopGrace },
    });
    return Date.now();
  }

  #notify(): void {
    for (const check of [...this.#waiters]) check();
  }

  async #listen(): Promise<void> {
    const manager = this;
    this.#server = await startServer({
      listen: `127.0.0.1:${this.#port}`,
      files: [file_cube_v1_worker_service],
      // A fake that feeds the worker bad assignments must also hear the worker's answers to
      // them (an ack echoing an unknown action), which the real manager would refuse.
      strict: false,
      routes(router) {
        router.service(WorkerService, {
          connect: (requests, ctx) => manager.#connect(requests, ctx.signal),
        });
      },
    });
    this.#port = Number(this.#server.address.split(":").at(-1));
  }

  async *#connect(
    requests: AsyncIterable<ConnectRequest>,
    signal: AbortSignal,
  ): AsyncIterable<ConnectResponse> {
    if (Date.now() < this.#refuseUntil) {
      throw new ConnectError("the test manager refuses connections", Code.Unavailable);
    }
    this.connections += 1;
    const conn: Connection = { n: this.connections, out: new AsyncQueue(), workerId: "" };
    const push = conn.out.push.bind(conn.out);
    conn.out.push = (value) => (this.muted ? false : push(value));
    this.#current = conn;
    const interval = this.#options.heartbeatIntervalMs ?? 500;
    const beat = setInterval(() => {
      if (this.#options.sendHeartbeats === false || !conn.workerId) return;
      conn.out.push(
        create(ConnectResponseSchema, {
          message: { case: "heartbeat", value: { time: timestampNow() } },
        }),
      );
    }, interval);
    signal.addEventListener("abort", () => conn.out.close(), { once: true });
    const reader = (async () => {
      for await (const req of requests) this.#receive(conn, req, interval);
    })();
    reader.catch(() => undefined).finally(() => conn.out.close());
    try {
      for await (const res of conn.out) yield res;
      if (conn.cut) throw conn.cut;
    } finally {
      clearInterval(beat);
      if (this.#current === conn) this.#current = undefined;
      this.#notify();
    }
  }

  #receive(conn: Connection, req: ConnectRequest, interval: number): void {
    if (conn.cut) return;
    // A batch is its messages, in order: tests see each one as if it came alone.
    if (req.message.case === "batch") {
      for (const inner of req.message.value.messages) this.#receive(conn, inner, interval);
      return;
    }
    this.received.push({ at: Date.now(), connection: conn.n, message: req.message });
    const m = req.message;
    if (m.case === "register") {
      conn.workerId = m.value.workerId;
      conn.out.push(
        create(ConnectResponseSchema, {
          message: {
            case: "registered",
            value: {
              workerId: m.value.workerId,
              heartbeatInterval: durationFromMs(interval),
              lastUpdateSeq: this.lastSeq.get(m.value.workerId) ?? 0n,
            },
          },
        }),
      );
    } else if (m.case === "update") {
      const last = this.lastSeq.get(conn.workerId) ?? 0n;
      const u = m.value;
      if (u.seq <= last) this.duplicates.push(u);
      else {
        if (u.seq !== last + 1n) this.violations.push(`seq ${u.seq} after ${last}`);
        this.stored.push(u);
        this.lastSeq.set(conn.workerId, u.seq);
      }
      if (this.autoAck) {
        conn.out.push(
          create(ConnectResponseSchema, {
            message: { case: "updateAck", value: { seq: this.lastSeq.get(conn.workerId) } },
          }),
        );
      }
    }
    this.#notify();
  }
}
