/**
 * Test harness of the manager's unit tests: a control plane over a MemoryStore served through
 * createRouterTransport, and a scripted worker speaking the real Connect stream protocol.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type Client,
  createClient,
  createRouterTransport,
  type Transport,
} from "@connectrpc/connect";
import { MetricsService } from "../gen/cube/v1/metrics_pb.js";
import { type Task, TaskSpecSchema, TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import {
  type Assignment,
  AssignmentAction,
  type ConnectRequestSchema,
  type InventoryItemSchema,
  type Registered,
  type WatchWorkersResponse,
  WorkerService,
} from "../gen/cube/v1/worker_service_pb.js";
import type { Clock } from "../lib/clock.js";
import { createLogger } from "../lib/logger.js";
import { managerRoutes } from "../manager/api/routes.js";
import type { ControlPlane } from "../manager/core/control-plane.js";
import type { ManagerOptions } from "../manager/core/options.js";
import { openControlPlane } from "../manager/index.js";
import { MemoryStore } from "../manager/store/memory-store.js";
import type { Store } from "../manager/store/store.js";

type RequestInit = MessageInitShape<typeof ConnectRequestSchema>;

/** A manager to test: its control plane, store, and clients of its three services. */
export interface Harness {
  cp: ControlPlane;
  /** The clock the manager's rules read (the `clock` option, e.g. a FakeClock; else the system's). */
  clock: Clock;
  store: Store;
  transport: Transport;
  tasks: Client<typeof TaskService>;
  workers: Client<typeof WorkerService>;
  metrics: Client<typeof MetricsService>;
  /** Closes this control plane (the store stays, as after a crash) and opens a new one over it. */
  restart(): Promise<Harness>;
}

/** Opens a manager over `store` (a fresh MemoryStore by default), closed at teardown. */
export async function harness(
  t: { teardown(fn: () => unknown): void },
  options: Omit<ManagerOptions, "dataDir"> & { store?: Store } = {},
): Promise<Harness> {
  const store = options.store ?? new MemoryStore();
  const cp = await openControlPlane(store, {
    logger: createLogger("manager", process.env.CUBE_LOG_LEVEL ?? "silent"),
    ...options,
  });
  t.teardown(() => cp.close());
  const transport = createRouterTransport(managerRoutes(cp));
  return {
    cp,
    clock: cp.clock,
    store,
    transport,
    tasks: createClient(TaskService, transport),
    workers: createClient(WorkerService, transport),
    metrics: createClient(MetricsService, transport),
    async restart() {
      await cp.close();
      return harness(t, { ...options, store });
    },
  };
}

/** A spec that fits anywhere unless told otherwise. */
export function spec(init: MessageInitShape<typeof TaskSpecSchema> = {}) {
  return create(TaskSpecSchema, { image: "cube/httpd:local", ...init });
}

/** Waits until task `id` is in state `want` (at `generation`, when given), as GetTask says. */
/**
 * Task "t" of `taskSpec` RUNNING on a scripted worker w1, then a second one, w2, that fits
 * it: the start of every test that moves a task (drain, cordon, restart elsewhere).
 */
export async function runningOnW1WithSpare(
  h: Harness,
  taskSpec: MessageInitShape<typeof TaskSpecSchema> = spec(),
): Promise<{ w1: FakeWorker; w2: FakeWorker }> {
  const w1 = new FakeWorker("w1");
  await w1.connect(h.transport);
  await h.tasks.runTask({ id: "t", spec: taskSpec });
  await reach(h, "t", TaskState.RUNNING, 1n);
  const w2 = new FakeWorker("w2");
  await w2.connect(h.transport);
  return { w1, w2 };
}

export async function reach(h: Harness, id: string, want: TaskState, generation?: bigint) {
  return eventually(async () => {
    const { task } = await h.tasks.getTask({ id });
    if (task?.state !== want || (generation !== undefined && task.generation !== generation)) {
      throw new Error(
        `${id}: ${TaskState[task?.state ?? 0]} g${task?.generation} (${task?.reason}), want ${TaskState[want]}`,
      );
    }
    return task;
  });
}

/** What a WatchWorkers opened by {@link watchWorkers} has received. */
export interface WorkersWatch {
  /** Every message so far, in order. */
  readonly messages: WatchWorkersResponse[];
  /** The first message with `removed` (a worker forgotten), once it came. */
  removed(): Promise<WatchWorkersResponse>;
}

/** Opens WatchWorkers on `h` and records what it sends, until the test ends. */
export function watchWorkers(t: { teardown(fn: () => unknown): void }, h: Harness): WorkersWatch {
  const messages: WatchWorkersResponse[] = [];
  const watch = new AbortController();
  t.teardown(() => watch.abort());
  void (async () => {
    for await (const r of h.workers.watchWorkers({}, { signal: watch.signal })) messages.push(r);
  })().catch(() => undefined);
  return {
    messages,
    removed: () =>
      eventually(() => {
        const r = messages.find((x) => x.removed);
        if (!r) throw new Error("no removed message");
        return r;
      }),
  };
}

/** Resolves when `check` passes, polling every 5 ms; rejects after `ms` with the last failure. */
export async function eventually<T>(check: () => T | Promise<T>, ms = 3000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

/** A server stream opened by a test: what ends it, and its first message to come. */
export interface OpenedStream {
  readonly abort: AbortController;
  readonly first: Promise<IteratorResult<unknown>>;
}

/**
 * Resolves once `open` gets a stream that answers (the place of one closed before is given
 * back once the server has seen it end); each try is closed again.
 */
export async function opensAgain(open: () => OpenedStream): Promise<void> {
  await eventually(async () => {
    const again = open();
    const first = await again.first;
    again.abort.abort();
    if (first.done) throw new Error("ended");
  });
}

/** An async queue feeding a client stream. */
class Feed<T> implements AsyncIterable<T> {
  #items: T[] = [];
  #wake: (() => void) | undefined;
  #closed = false;
  push(item: T): void {
    this.#items.push(item);
    this.#wake?.();
  }
  close(): void {
    this.#closed = true;
    this.#wake?.();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      while (this.#items.length > 0) yield this.#items.shift() as T;
      if (this.#closed) return;
      await new Promise<void>((r) => {
        this.#wake = r;
      });
      this.#wake = undefined;
    }
  }
}

/**
 * A scripted worker on a real Connect stream. With `auto` (the default) it behaves like a
 * quick healthy worker: it acks every assignment, answers RUN with RUNNING and STOP with
 * COMPLETED "stopped". Everything received is recorded.
 */
export class FakeWorker {
  readonly assignments: Assignment[] = [];
  readonly acks: bigint[] = [];
  registered: Registered | undefined;
  /** Set when the stream ended, with its error if any. */
  ended: { error?: unknown } | undefined;
  /** What this worker runs: task id → generation. */
  readonly running = new Map<string, bigint>();
  /** Frames received, and how many of them were batches. */
  frames = 0;
  batchFrames = 0;
  #feed = new Feed<RequestInit>();
  #seq: bigint;
  #listeners = new Set<() => void>();

  constructor(
    readonly id: string,
    readonly options: {
      auto?: boolean;
      capacity?: { cpu?: number; memoryBytes?: bigint; diskBytes?: bigint };
      seq?: bigint;
      address?: string;
      /** Register with accepts_batch. */
      acceptsBatch?: boolean;
      /** Ack each assignment as it arrives (default); false leaves it to {@link ackAll}. */
      ack?: boolean;
      /** The worker's labels (for job constraints). */
      labels?: Record<string, string>;
      /** Register.agent_started_at, in ms since the epoch (unset by default). */
      agentStartedAtMs?: number;
    } = {},
  ) {
    this.#seq = options.seq ?? 0n;
  }

  /** Opens the stream and registers; resolves once `registered` arrived. */
  async connect(
    transport: Transport,
    inventory?: MessageInitShape<typeof InventoryItemSchema>[] | "none",
  ): Promise<Registered> {
    const client = createClient(WorkerService, transport);
    this.#feed = new Feed<RequestInit>();
    this.ended = undefined;
    this.registered = undefined;
    this.send({
      case: "register",
      value: {
        workerId: this.id,
        name: this.id,
        address: this.options.address ?? "127.0.0.1:1",
        capacity: this.options.capacity ?? { cpu: 4, memoryBytes: 8n << 30n },
        version: "test",
        acceptsBatch: this.options.acceptsBatch ?? false,
        labels: this.options.labels ?? {},
        agentStartedAt:
          this.options.agentStartedAtMs === undefined
            ? undefined
            : timestampFromMs(this.options.agentStartedAtMs),
      },
    });
    // "none": a stream that ends before its inventory is sent.
    if (inventory !== "none") this.send({ case: "inventory", value: { items: inventory ?? [] } });
    const feed = this.#feed;
    const responses = client.connect(feed);
    // An end of an earlier stream of this worker is not this one's.
    const end = (how: { error?: unknown }) => {
      if (this.#feed === feed) this.#end(how);
    };
    (async () => {
      for await (const r of responses) {
        this.frames++;
        this.#receive(r.message);
      }
    })().then(
      () => end({}),
      (error) => end({ error }),
    );
    const deadline = Date.now() + 3000;
    for (;;) {
      if (this.registered) return this.registered;
      // Refused (the stream ended first): no need to wait out the deadline. Read through a
      // cast: TS keeps the `undefined` assigned above across the awaits.
      const ended = this.ended as FakeWorker["ended"];
      if (ended) {
        throw new Error(`${this.id}: stream ended before registered`, { cause: ended.error });
      }
      if (Date.now() > deadline) throw new Error(`${this.id} not registered`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  send(message: RequestInit["message"]): void {
    this.#feed.push({ message } as RequestInit);
  }

  /** Reports a state change of a task (next seq). */
  update(
    taskId: string,
    generation: bigint,
    state: TaskState,
    extra: { reason?: string; exitCode?: number; containerId?: string } = {},
  ): bigint {
    this.#seq += 1n;
    this.send({
      case: "update",
      value: { seq: this.#seq, taskId, generation, state, containerId: `c-${taskId}`, ...extra },
    });
    return this.#seq;
  }

  /** Ends the stream from the worker's side (as a clean close). */
  disconnect(): void {
    this.#feed.close();
  }

  /** Resolves with the first assignment (already received or to come) matching `match`. */
  waitFor(match: (a: Assignment) => boolean, ms = 3000): Promise<Assignment> {
    return eventually(() => {
      const a = this.assignments.find(match);
      if (!a) throw new Error(`${this.id}: no matching assignment among ${this.describe()}`);
      return a;
    }, ms);
  }

  describe(): string {
    return JSON.stringify(
      this.assignments.map((a) => [
        AssignmentAction[a.action],
        a.task?.id,
        String(a.task?.generation),
      ]),
    );
  }

  /** Acks every assignment received so far (for a worker made with `ack: false`). */
  ackAll(): void {
    for (const a of this.assignments) this.#ack(a);
  }

  #ack(a: Assignment): void {
    const task = a.task as Task;
    this.send({
      case: "assignmentAck",
      value: { taskId: task.id, generation: task.generation, action: a.action },
    });
  }

  /** Sends several messages as one batch frame. */
  sendBatch(messages: RequestInit["message"][]): void {
    this.send({ case: "batch", value: { messages: messages.map((message) => ({ message })) } });
  }

  /** The update message {@link update} would send (next seq), for a batch. */
  nextUpdate(taskId: string, generation: bigint, state: TaskState): RequestInit["message"] {
    this.#seq += 1n;
    return {
      case: "update",
      value: { seq: this.#seq, taskId, generation, state, containerId: `c-${taskId}` },
    };
  }

  #receive(m: { case?: string; value?: unknown }): void {
    if (m.case === "batch") {
      this.batchFrames++;
      for (const inner of (m.value as { messages: { message: typeof m }[] }).messages) {
        this.#receive(inner.message);
      }
      return;
    }
    if (m.case === "registered") this.registered = m.value as Registered;
    if (m.case === "updateAck") this.acks.push((m.value as { seq: bigint }).seq);
    if (m.case === "assignment") {
      const a = m.value as Assignment;
      this.assignments.push(a);
      const task = a.task as Task;
      if (this.options.ack !== false) this.#ack(a);
      if (this.options.auto !== false) {
        if (a.action === AssignmentAction.RUN) {
          this.running.set(task.id, task.generation);
          this.update(task.id, task.generation, TaskState.RUNNING);
        } else if (this.running.has(task.id)) {
          const gen = this.running.get(task.id) as bigint;
          this.running.delete(task.id);
          this.update(task.id, gen, TaskState.COMPLETED, { reason: "stopped" });
        }
      }
    }
    for (const l of this.#listeners) l();
  }

  #end(how: { error?: unknown }): void {
    this.ended = how;
  }
}
