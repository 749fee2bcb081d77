import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { NodeMetrics, TaskMetrics } from "../../gen/cube/v1/metrics_pb.js";
import { ResourcesSchema } from "../../gen/cube/v1/task_pb.js";
import { type Worker, WorkerSchema, WorkerStatus } from "../../gen/cube/v1/worker_pb.js";
import type { Assignment } from "../../gen/cube/v1/worker_service_pb.js";
import type { TimerHandle } from "../../lib/clock.js";
import { memoryNumbers } from "../scheduler/numbers.js";
import type { Amounts, NodeView } from "../scheduler/types.js";
import type { WorkerConnection } from "./worker-connection.js";

/** Cpu is summed in integer micro-cores: adding and removing 0.1 a million times must end at 0. */
const MICRO = 1_000_000;

interface MutableAmounts {
  cpu: number;
  memoryBytes: bigint;
  diskBytes: bigint;
}

type MutableNodeView = { -readonly [K in keyof NodeView]: NodeView[K] } & {
  capacity: MutableAmounts;
  allocated: MutableAmounts;
};

/** The one object a view's {@link NodeView.memory} points to while its amounts are exact. */
type MutableMemory = { capacity: number; allocated: number };

/**
 * One worker as the manager tracks it: its stored identity, its live connection, the tasks
 * holding resources on it, and the scheduler's view of it — all kept up to date
 * incrementally (O(1) per task change), never recomputed by scanning tasks.
 */
export class WorkerEntry {
  #record: Worker;
  status: WorkerStatus;
  /** Highest TaskUpdate.seq persisted for this worker. */
  lastUpdateSeq: bigint;
  /** Highest seq acknowledged down the stream. */
  ackedSeq = 0n;
  lastSeenMs = 0;
  connection: WorkerConnection | undefined;
  /** Ids of the tasks in SCHEDULED or RUNNING on this worker. */
  readonly tasks = new Set<string>();
  /** Latest assignment per task not yet acknowledged by the worker. */
  readonly unacked = new Map<string, Assignment>();
  /** Tasks whose latest assignment is on its way on the current stream (the window). */
  readonly inFlight = new Set<string>();
  /** Tasks whose assignment waits for room in the window, oldest first. */
  readonly waiting = new Set<string>();
  metrics: NodeMetrics | undefined;
  taskMetrics = new Map<string, TaskMetrics>();
  downTimer: TimerHandle | undefined;
  /** What the scheduler sees; the same object across calls, updated in place. */
  readonly view: NodeView;
  readonly #memory: MutableMemory = { capacity: 0, allocated: 0 };
  #cpuMicros = 0;

  constructor(record: Worker, lastUpdateSeq: bigint, status: WorkerStatus) {
    this.#record = record;
    this.lastUpdateSeq = lastUpdateSeq;
    this.status = status;
    const view: MutableNodeView = {
      id: record.id,
      name: record.name,
      ready: false,
      notReadyReason: "",
      capacity: { cpu: 0, memoryBytes: 0n, diskBytes: 0n },
      allocated: { cpu: 0, memoryBytes: 0n, diskBytes: 0n },
      taskCount: 0,
      labels: record.labels,
      memory: undefined,
    };
    this.view = view;
    this.setRecord(record);
    this.setStatus(status);
  }

  /** The task's assignment is settled (acknowledged, or no longer wanted). */
  settle(taskId: string): void {
    this.unacked.delete(taskId);
    this.inFlight.delete(taskId);
    this.waiting.delete(taskId);
  }

  /** Nothing is in flight any more (a new stream, or the worker is gone). */
  resetWindow(): void {
    this.inFlight.clear();
    this.waiting.clear();
  }

  get id(): string {
    return this.record.id;
  }

  /** The name people know it by, with its id when they differ. */
  get label(): string {
    return this.#label;
  }

  /** Built once per record: every placement's event message names the worker. */
  #label = "";

  /** Stored identity: id, name, address, capacity, labels, version, registered_at. */
  get record(): Worker {
    return this.#record;
  }

  setRecord(record: Worker): void {
    this.#record = record;
    this.#label =
      record.name && record.name !== record.id ? `${record.name} (${record.id})` : record.id;
    const view = this.view as MutableNodeView;
    view.name = record.name;
    view.labels = record.labels;
    view.capacity.cpu = record.capacity?.cpu ?? 0;
    view.capacity.memoryBytes = record.capacity?.memoryBytes ?? 0n;
    view.capacity.diskBytes = record.capacity?.diskBytes ?? 0n;
    this.#syncMemory();
  }

  #syncMemory(): void {
    const view = this.view as MutableNodeView;
    view.memory = memoryNumbers(
      view.capacity.memoryBytes,
      view.allocated.memoryBytes,
      this.#memory,
    );
  }

  setStatus(status: WorkerStatus): void {
    this.status = status;
    const view = this.view as MutableNodeView;
    view.ready = status === WorkerStatus.READY;
    view.notReadyReason = view.ready ? undefined : WorkerStatus[status];
  }

  setMetrics(node: NodeMetrics, tasks: TaskMetrics[]): void {
    this.metrics = node;
    this.taskMetrics = new Map(tasks.map((t) => [t.taskId, t]));
    const view = this.view as MutableNodeView;
    view.cpuLoad = node.cpuPercent / 100;
    view.memoryUsedBytes = node.memoryUsedBytes;
  }

  /** A task starts holding `amounts` here. */
  reserve(taskId: string, amounts: Amounts): void {
    if (this.tasks.has(taskId)) return;
    this.tasks.add(taskId);
    this.#add(amounts, 1);
  }

  /** A task stops holding `amounts` here. */
  release(taskId: string, amounts: Amounts): void {
    if (!this.tasks.delete(taskId)) return;
    this.#add(amounts, -1);
  }

  /** Whether `amounts` more fit within the declared capacity (0 capacity means undeclared). */
  fits(amounts: Amounts): boolean {
    const { capacity, allocated } = this.view;
    return (
      (amounts.cpu === 0 ||
        capacity.cpu === 0 ||
        this.#cpuMicros + Math.round(amounts.cpu * MICRO) <= Math.round(capacity.cpu * MICRO)) &&
      (amounts.memoryBytes === 0n ||
        capacity.memoryBytes === 0n ||
        allocated.memoryBytes + amounts.memoryBytes <= capacity.memoryBytes) &&
      (amounts.diskBytes === 0n ||
        capacity.diskBytes === 0n ||
        allocated.diskBytes + amounts.diskBytes <= capacity.diskBytes)
    );
  }

  /** The worker as the API shows it. */
  toProto(): Worker {
    const { allocated } = this.view;
    return create(WorkerSchema, {
      ...this.record,
      status: this.status,
      allocated: create(ResourcesSchema, {
        cpu: allocated.cpu,
        memoryBytes: allocated.memoryBytes,
        diskBytes: allocated.diskBytes,
      }),
      lastHeartbeat: this.lastSeenMs ? timestampFromMs(this.lastSeenMs) : undefined,
      metrics: this.metrics,
      taskCount: this.tasks.size,
    });
  }

  #add(amounts: Amounts, sign: 1 | -1): void {
    const view = this.view as MutableNodeView;
    this.#cpuMicros += sign * Math.round(amounts.cpu * MICRO);
    view.allocated.cpu = this.#cpuMicros / MICRO;
    view.allocated.memoryBytes += sign === 1 ? amounts.memoryBytes : -amounts.memoryBytes;
    view.allocated.diskBytes += sign === 1 ? amounts.diskBytes : -amounts.diskBytes;
    view.taskCount = this.tasks.size;
    this.#syncMemory();
  }
}

/** Every worker the manager knows, and the node list the scheduler reads. */
export class WorkerTable {
  readonly #byId = new Map<string, WorkerEntry>();
  #views: NodeView[] = [];

  get(id: string): WorkerEntry | undefined {
    return this.#byId.get(id);
  }

  add(entry: WorkerEntry): void {
    this.#byId.set(entry.id, entry);
    this.#views = [...this.#views, entry.view];
  }

  /** Registration order. */
  all(): IterableIterator<WorkerEntry> {
    return this.#byId.values();
  }

  get size(): number {
    return this.#byId.size;
  }

  /** The scheduler's node list: the same array until a worker is added (O(1) per placement). */
  views(): readonly NodeView[] {
    return this.#views;
  }

  /** By id, or by name when exactly one worker has it. */
  find(idOrName: string): WorkerEntry | undefined {
    const byId = this.#byId.get(idOrName);
    if (byId) return byId;
    let found: WorkerEntry | undefined;
    for (const w of this.#byId.values()) {
      if (w.record.name === idOrName) {
        if (found) return undefined;
        found = w;
      }
    }
    return found;
  }
}
