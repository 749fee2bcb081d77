/**
 * The scheduler's view of the world: plain read-only data, so scheduling is a pure
 * function of (task, snapshot, clock) that returns a plan, as Nomad's is.
 */

/** Amounts in cores and bytes. */
export interface Amounts {
  readonly cpu: number;
  readonly memoryBytes: bigint;
  readonly diskBytes: bigint;
}

/** One worker as the scheduler sees it. */
export interface NodeView {
  readonly id: string;
  readonly name: string;
  /** Only READY nodes take tasks. */
  readonly ready: boolean;
  /** Why a node is not ready, for the pending reason: "DOWN", "DISCONNECTED". */
  readonly notReadyReason?: string;
  readonly capacity: Amounts;
  /** Sum of the requests of the unfinished tasks placed on it. */
  readonly allocated: Amounts;
  /** Unfinished tasks placed on it. */
  readonly taskCount: number;
  /** Latest measured cpu busy, 0–1 (undefined when no sample yet). */
  readonly cpuLoad?: number;
  /** Latest measured memory in use, bytes (undefined when no sample yet). */
  readonly memoryUsedBytes?: bigint;
  readonly labels: Readonly<Record<string, string>>;
  /**
   * Host ports ("8080/tcp") published by the unfinished tasks placed on it, with how many
   * hold each (more than one only after a load or a worker's own report). Absent or empty
   * when none.
   */
  readonly hostPorts?: ReadonlyMap<string, number>;
  /**
   * capacity.memoryBytes and allocated.memoryBytes as numbers, when the caller keeps them
   * ({@link memoryNumbers}): the scheduling loop looks at ~100 nodes a task, and a bigint
   * sum is a heap allocation (300 MB of garbage per 100,000 placements). Absent, the
   * scheduler reads the bigints; either way the plan is the same.
   */
  readonly memory?: MemoryNumbers;
}

/** A node's memory amounts as numbers, exact (see {@link NodeView.memory}). */
export interface MemoryNumbers {
  readonly capacity: number;
  readonly allocated: number;
}

/** A rule on a node's labels: `key = value`, `key != value`, `key in (values…)`. */
export interface LabelConstraint {
  readonly key: string;
  readonly operator: "=" | "!=" | "in";
  readonly values: readonly string[];
}

/**
 * Where a task of a group (a job's replica) may go besides fitting: label constraints, and
 * how its peers — the group's other tasks holding resources, counted per node — weigh.
 */
export interface Placement {
  /** Every one must hold on the node's labels. */
  readonly constraints?: readonly LabelConstraint[];
  /** The group's tasks holding resources, per node id. */
  readonly peers?: ReadonlyMap<string, number>;
  /** Prefer the nodes with the fewest peers (before the scheduler's own cost). */
  readonly spread?: boolean;
}

/** What the task asks for. */
export interface TaskRequest {
  readonly id: string;
  readonly resources: Amounts;
  /** Nodes the task must not go to (e.g. the one it is being moved away from). */
  readonly avoid?: ReadonlySet<string>;
  /** Fixed host ports it publishes ("8080/tcp"): a node where one is held cannot take it. */
  readonly hostPorts?: readonly string[];
  /** Constraints and spreading of a task that belongs to a group (a job). */
  readonly placement?: Placement;
}

/** A read-only snapshot of the cluster, with the clock passed in. */
export interface Snapshot {
  readonly nodes: readonly NodeView[];
  /** Milliseconds since the epoch, from the caller's clock. */
  readonly now: number;
  /** Round-robin's position, kept by the caller between calls. */
  readonly cursor: number;
}

/** Nodes that can take the task, and why the others cannot (reason → count). */
export interface Candidates {
  readonly nodes: readonly NodeView[];
  readonly rejected: ReadonlyMap<string, number>;
}

/** The outcome of scheduling one task. */
export type Plan =
  | { readonly kind: "place"; readonly nodeId: string; readonly cursor: number }
  | { readonly kind: "pending"; readonly reason: string; readonly cursor: number };

/** The book's scheduler interface: select candidates → score → pick. Pure. */
export interface Scheduler {
  readonly name: string;
  selectCandidates(task: TaskRequest, snapshot: Snapshot): Candidates;
  /** Lower is better. */
  score(
    task: TaskRequest,
    candidates: readonly NodeView[],
    snapshot: Snapshot,
  ): Map<string, number>;
  pick(
    scores: ReadonlyMap<string, number>,
    candidates: readonly NodeView[],
    snapshot: Snapshot,
  ): NodeView | undefined;
}

/** The schedulers a manager flag can name. */
export type SchedulerName = "round-robin" | "epvm" | "fit";

/**
 * A scheduler whose score is a cost of one node at a time (lower is better), which lets
 * `schedule()` select, score and pick in a single pass over the nodes without building
 * arrays or maps. Its three {@link Scheduler} methods must give the same answer; the
 * built-in schedulers derive them from {@link NodeCostScheduler.cost}.
 */
export interface NodeCostScheduler extends Scheduler {
  /**
   * How many fitting nodes to score at most, counted from the cursor (kube-scheduler's
   * percentageOfNodesToScore idea): the first `sampleSize` fitting nodes compete.
   * `Infinity` scores every node.
   */
  readonly sampleSize: number;
  /** The cost of placing the task on a node that fits; lower is better, never NaN. */
  cost(task: TaskRequest, node: NodeView, snapshot: Snapshot): number;
}
