/**
 * Candidate selection shared by every scheduler: which nodes may take a task, and a
 * reason code for each one that may not.
 *
 * A node fits when it is READY, is not in the task's avoid set, and on every dimension
 * `allocated + request ≤ capacity`, from declared amounts only — measured usage never
 * lets a node take more than it declared, so cube never over-commits. A capacity of 0
 * means the node did not declare that dimension (the proto's "0 means no limit"), so it
 * is not limited there.
 */
import { EXACT_BELOW, memoNumber } from "./numbers.js";
import type {
  Candidates,
  LabelConstraint,
  NodeView,
  Placement,
  Snapshot,
  TaskRequest,
} from "./types.js";

/** The task's memory request as a number (the same task is checked against every node). */
const requestNumber = memoNumber();

/**
 * Slack on cpu sums, in cores: allocated cpu is a sum of doubles, and 0.2 + 0.4 + 0.3 + 0.1
 * comes out above 1, which would refuse a task that fits exactly.
 */
export const CPU_EPSILON = 1e-9;

/** Bits of a {@link misfit} mask. */
export const MISFIT = {
  notReady: 1,
  avoided: 2,
  cpu: 4,
  memory: 8,
  disk: 16,
  constraint: 32,
  port: 64,
} as const;

/** Whether `c` holds on `labels`. */
export function constraintHolds(c: LabelConstraint, labels: Readonly<Record<string, string>>) {
  const value = Object.hasOwn(labels, c.key) ? labels[c.key] : undefined;
  if (c.operator === "=") return value === c.values[0];
  if (c.operator === "!=") return value !== c.values[0];
  return value !== undefined && c.values.includes(value);
}

/** The first constraint of `placement` that does not hold on `node`, if any. */
export function failedConstraint(
  placement: Placement,
  node: NodeView,
): LabelConstraint | undefined {
  for (const c of placement.constraints ?? []) if (!constraintHolds(c, node.labels)) return c;
  return undefined;
}

/** Whether `node` holds any of `ports` (allocation-free, for the scheduling loop). */
function holdsAnyPort(ports: readonly string[], node: NodeView): boolean {
  const held = node.hostPorts;
  if (held === undefined || held.size === 0) return false;
  for (const p of ports) if ((held.get(p) ?? 0) > 0) return true;
  return false;
}

/** The host ports `task` publishes that are already held on `node`, in the task's order. */
export function takenPorts(task: TaskRequest, node: NodeView): string[] {
  const held = node.hostPorts;
  if (task.hostPorts === undefined || held === undefined || held.size === 0) return [];
  return task.hostPorts.filter((p) => (held.get(p) ?? 0) > 0);
}

/** A constraint as people write it: "zone = eu", "zone in (eu, us)". */
export function constraintText(c: LabelConstraint): string {
  return c.operator === "in"
    ? `${c.key} in (${c.values.join(", ")})`
    : `${c.key} ${c.operator} ${c.values[0]}`;
}

/**
 * Why `node` cannot take `task`, as a bit mask of {@link MISFIT}; 0 means it fits. A node
 * that is not ready or is avoided gets only that bit: its resources do not matter. Pure
 * and allocation-free, for the scheduling loop.
 */
export function misfit(task: TaskRequest, node: NodeView): number {
  if (!node.ready) return MISFIT.notReady;
  if (task.avoid !== undefined && task.avoid.size > 0 && task.avoid.has(node.id)) {
    return MISFIT.avoided;
  }
  const placement = task.placement;
  if (placement !== undefined) {
    if (placement.constraints !== undefined && failedConstraint(placement, node)) {
      return MISFIT.constraint;
    }
  }
  if (task.hostPorts !== undefined && holdsAnyPort(task.hostPorts, node)) return MISFIT.port;
  const want = task.resources;
  const cap = node.capacity;
  const used = node.allocated;
  let mask = 0;
  if (want.cpu > 0 && cap.cpu > 0 && used.cpu + want.cpu > cap.cpu + CPU_EPSILON) {
    mask |= MISFIT.cpu;
  }
  const wantMemory = want.memoryBytes;
  if (wantMemory > 0n && cap.memoryBytes > 0n) {
    const m = node.memory;
    if (
      m !== undefined && wantMemory < EXACT_BELOW
        ? m.allocated + requestNumber(wantMemory) > m.capacity
        : used.memoryBytes + wantMemory > cap.memoryBytes
    ) {
      mask |= MISFIT.memory;
    }
  }
  if (want.diskBytes > 0n && cap.diskBytes > 0n) {
    if (used.diskBytes + want.diskBytes > cap.diskBytes) mask |= MISFIT.disk;
  }
  return mask;
}

/** Key prefix of a not-ready rejection; the rest is the node's notReadyReason. */
export const NOT_READY_PREFIX = "state:";
/** Key of an avoided node. */
export const AVOIDED = "avoided";
/** Key prefix of a failed constraint; the rest is the constraint as people write it. */
export const CONSTRAINT_PREFIX = "constraint:";
/** Key prefix of a node where a host port the task publishes is held; the rest names them. */
export const PORT_PREFIX = "port:";
/** Key prefix of a resource shortfall; the rest names the dimensions, "cpu+memory". */
export const LACK_PREFIX = "lack:";

/** "lack:…" keys by the resource bits of a mask (bits 2–4 shifted down), built once. */
const LACK_KEYS = Array.from({ length: 8 }, (_, bits) => {
  const dims = ["cpu", "memory", "disk"].filter((_, i) => bits & (1 << i));
  return LACK_PREFIX + dims.join("+");
});

/**
 * The {@link Candidates.rejected} key of a non-zero mask: "state:DOWN", "avoided",
 * "constraint:zone = eu", "port:8080/tcp", "lack:cpu+disk".
 */
export function rejectionKey(mask: number, node: NodeView, task?: TaskRequest): string {
  if (mask & MISFIT.notReady) return `${NOT_READY_PREFIX}${node.notReadyReason || "not ready"}`;
  if (mask & MISFIT.avoided) return AVOIDED;
  if (mask & MISFIT.constraint) {
    const c = task?.placement && failedConstraint(task.placement, node);
    return `${CONSTRAINT_PREFIX}${c ? constraintText(c) : "?"}`;
  }
  if (mask & MISFIT.port) return `${PORT_PREFIX}${task ? takenPorts(task, node).join(", ") : "?"}`;
  return LACK_KEYS[(mask >> 2) & 7];
}

/** A cursor as an index into `n` nodes: anything not a whole number counts as 0. */
export function startIndex(cursor: number, n: number): number {
  if (n === 0 || !Number.isSafeInteger(cursor)) return 0;
  return ((cursor % n) + n) % n;
}

/**
 * The nodes that fit `task`, in rotation order starting at `snapshot.cursor`, stopping
 * after `limit` of them; `rejected` counts every node looked at that does not fit, by
 * {@link rejectionKey}. When fewer than `limit` fit, every node was looked at, so the
 * counts are complete — always so when none fits.
 */
export function selectCandidates(
  task: TaskRequest,
  snapshot: Snapshot,
  limit = Number.POSITIVE_INFINITY,
): Candidates {
  const all = snapshot.nodes;
  const n = all.length;
  const start = startIndex(snapshot.cursor, n);
  const nodes: NodeView[] = [];
  const rejected = new Map<string, number>();
  for (let i = 0; i < n && nodes.length < limit; i++) {
    const node = all[(start + i) % n];
    const mask = misfit(task, node);
    if (mask === 0) {
      nodes.push(node);
    } else {
      const key = rejectionKey(mask, node, task);
      rejected.set(key, (rejected.get(key) ?? 0) + 1);
    }
  }
  return { nodes, rejected };
}
