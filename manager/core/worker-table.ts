import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { NodeMetrics, TaskMetrics } from "../../gen/cube/v1/metrics_pb.js";
import { type Drain, DrainStatus } from "../../gen/cube/v1/node_service_pb.js";
import { ResourcesSchema } from "../../gen/cube/v1/task_pb.js";
import {
  type EngineReport,
  EngineStatus,
  type Worker,
  WorkerSchema,
  WorkerStatus,
} from "../../gen/cube/v1/worker_pb.js";
import type { Assignment, Leaving } from "../../gen/cube/v1/worker_service_pb.js";
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
  /** Runs out the grace of a DISCONNECTED worker: it is DOWN when it fires. */
  downTimer: TimerHandle | undefined;
  /** The length of that grace, and what it will say: kept to re-arm it after a stall. */
  downGrace: { readonly ms: number; readonly why: string } | undefined;
  /** The goodbye the worker sent on its current stream, if any (cleared when it registers). */
  leaving: Leaving | undefined;
  /**
   * What the manager presents when it calls the worker's own port (Register.call_secret;
   * empty from a worker that sent none). Memory only: the worker sends it at each register.
   */
  callSecret = "";
  /** Whether it has registered with this manager process (so {@link callSecret} is its own). */
  registeredSince = false;
  /** Its container engine, as it last reported (undefined: never said). */
  engine: EngineReport | undefined;
  /**
   * Whether the inventory of its current stream has been reconciled. Until then it gets no
   * new task: what it holds decides first (a returning worker's copies are kept before
   * anything else is placed there, which would replace them).
   */
  synced = false;
  /**
   * Assignments seen unacknowledged at the last resend check, per task: one still the same
   * object at the next check has waited a whole period, and is sent again.
   */
  resendMarks = new Map<string, Assignment>();
  /** What the scheduler sees; the same object across calls, updated in place. */
  readonly view: NodeView;
  readonly #memory: MutableMemory = { capacity: 0, allocated: 0 };
  #cpuMicros = 0;
  /** The view's hostPorts: fixed host ports held here, with how many tasks hold each. */
  readonly #ports = new Map<string, number>();

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
      hostPorts: this.#ports,
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
    this.resendMarks.clear();
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

  /** Stored identity: id, name, address, capacity, labels, version, registered_at, down_since. */
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
    this.#syncReady();
  }

  /** Whether its inventory is reconciled (see {@link synced}). */
  setSynced(synced: boolean): void {
    this.synced = synced;
    this.#syncReady();
  }

  /** Records what the worker says of its container engine; a worker without one gets no new task. */
  setEngine(report: EngineReport | undefined): void {
    this.engine = report;
    this.#syncReady();
  }

  /** Whether the worker said its container engine does not answer. */
  get engineDown(): boolean {
    return this.engine?.status === EngineStatus.DOWN;
  }

  /**
   * Set when it registered again with a new agent (agent_started_at changed) within the
   * restart grace: why its next inventory's running copies are kept over replacements.
   */
  keepReturning: string | undefined;

  /** An operator cordoned it (or is draining it): no new task is placed on it. */
  cordoned = false;
  /** Its current or last drain (manager/rules/node-ops.ts). */
  drain: Drain | undefined;

  /** Cordons or uncordons it: a cordoned worker takes no new task. */
  setCordoned(cordoned: boolean): void {
    this.cordoned = cordoned;
    this.#syncReady();
  }

  #syncReady(): void {
    const view = this.view as MutableNodeView;
    view.ready =
      this.status === WorkerStatus.READY && this.synced && !this.engineDown && !this.cordoned;
    view.notReadyReason = view.ready
      ? undefined
      : this.status !== WorkerStatus.READY
        ? WorkerStatus[this.status]
        : this.engineDown
          ? "without its container engine"
          : !this.synced
            ? "still reporting what it holds"
            : this.drain?.status === DrainStatus.DRAINING
              ? "draining"
              : "cordoned";
  }

  /**
   * The worker's latest sample, as manager/rules/worker-stats.ts kept it (its own node and the
   * tasks it holds, numbers clamped): task samples replace the previous ones whole.
   */
  setMetrics(node: NodeMetrics, tasks: TaskMetrics[]): void {
    this.metrics = node;
    this.taskMetrics = new Map(tasks.map((t) => [t.taskId, t]));
    const view = this.view as MutableNodeView;
    view.cpuLoad = node.cpuPercent / 100;
    view.memoryUsedBytes = node.memoryUsedBytes;
  }

  /** A task starts holding `amounts` and `hostPorts` here. */
  reserve(taskId: string, amounts: Amounts, hostPorts?: readonly string[]): void {
    if (this.tasks.has(taskId)) return;
    this.tasks.add(taskId);
    this.#add(amounts, 1);
    if (hostPorts) for (const p of hostPorts) this.#ports.set(p, (this.#ports.get(p) ?? 0) + 1);
  }

  /** A task stops holding `amounts` and `hostPorts` here. */
  release(taskId: string, amounts: Amounts, hostPorts?: readonly string[]): void {
    if (!this.tasks.delete(taskId)) return;
    this.#add(amounts, -1);
    if (hostPorts) {
      for (const p of hostPorts) {
        const n = (this.#ports.get(p) ?? 0) - 1;
        if (n > 0) this.#ports.set(p, n);
        else this.#ports.delete(p);
      }
    }
  }

  /**
   * Whether `amounts` more fit within the declared capacity (0 capacity means undeclared)
   * and none of `hostPorts` is held here.
   */
  fits(amounts: Amounts, hostPorts?: readonly string[]): boolean {
    if (hostPorts?.some((p) => this.#ports.has(p))) return false;
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
      engine: this.engine,
      // A record loaded DOWN keeps its down_since while the start-up grace runs: not DOWN yet.
      downSince: this.status === WorkerStatus.DOWN ? this.record.downSince : undefined,
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

/**
 * The manager's own progress, against which worker silence is measured (see
 * manager/rules/worker-liveness.ts): when its loop last ran a liveness check, and when it
 * last came out of a stall.
 */
export interface LoopProgress {
  /** Clock time of the last check; 0 before the first. */
  lastCheckMs: number;
  /** Clock time the last stall was noticed; -Infinity before any. */
  lastStallEndMs: number;
  /** Stalls noticed so far. */
  stalls: number;
}

/** Every worker the manager knows, and the node list the scheduler reads. */
export class WorkerTable {
  readonly #byId = new Map<string, WorkerEntry>();
  #views: NodeView[] = [];
  /** The manager's own progress, for the liveness rules. */
  readonly loop: LoopProgress = { lastCheckMs: 0, lastStallEndMs: -Infinity, stalls: 0 };

  get(id: string): WorkerEntry | undefined {
    return this.#byId.get(id);
  }

  add(entry: WorkerEntry): void {
    this.#byId.set(entry.id, entry);
    this.#views = [...this.#views, entry.view];
  }

  /** Forgets a worker (NodeService.RemoveNode): gone from every list and from placement. */
  remove(id: string): void {
    const entry = this.#byId.get(id);
    if (!entry) return;
    this.#byId.delete(id);
    this.#views = this.#views.filter((v) => v !== entry.view);
  }

  /** Registration order. */
  all(): IterableIterator<WorkerEntry> {
    return this.#byId.values();
  }

  get size(): number {
    return this.#byId.size;
  }

  /** The scheduler's node list: the same array until a worker is added or removed. */
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
