/**
 * The scheduler, a pure module: `schedule(scheduler, task, snapshot)` turns a task and a
 * read-only snapshot of the nodes into a plan — place it on a node, or leave it PENDING
 * with a reason a person can read. No I/O, no clock of its own, no state between calls
 * but the cursor, which the plan hands back for the caller to keep.
 *
 * The cursor is an index into `snapshot.nodes` (taken modulo their number), so the caller
 * should keep the nodes in a stable order (e.g. by registration). Every scheduler looks
 * at the nodes in rotation order from the cursor, scores at most its sample size of those
 * that fit, and "ties go to the first" means the first in that order.
 */
import { misfit, selectCandidates, startIndex } from "./candidates.js";
import { createEpvm } from "./epvm.js";
import { pendingReason } from "./reason.js";
import { createResourceFit } from "./resource-fit.js";
import { createRoundRobin } from "./round-robin.js";
import type {
  NodeCostScheduler,
  NodeView,
  Plan,
  Scheduler,
  SchedulerName,
  Snapshot,
  TaskRequest,
} from "./types.js";

export type * from "./types.js";

/** The names {@link createScheduler} accepts, the default ("fit") first. */
export const SCHEDULER_NAMES: readonly SchedulerName[] = ["fit", "epvm", "round-robin"];

/** Options of {@link createScheduler}. */
export interface SchedulerOptions {
  /** Fitting nodes scored per task by "epvm" and "fit" (round-robin needs only one). */
  readonly sampleSize?: number;
}

/** The scheduler a manager flag names; an unknown name throws an Error listing the valid ones. */
export function createScheduler(
  name: SchedulerName,
  options: SchedulerOptions = {},
): NodeCostScheduler {
  switch (name) {
    case "round-robin":
      return createRoundRobin();
    case "epvm":
      return createEpvm(options.sampleSize);
    case "fit":
      return createResourceFit(options.sampleSize);
    default:
      throw new Error(
        `unknown scheduler ${JSON.stringify(name)}: valid ones are ${SCHEDULER_NAMES.join(", ")}`,
      );
  }
}

function isNodeCost(scheduler: Scheduler): scheduler is NodeCostScheduler {
  const s = scheduler as Partial<NodeCostScheduler>;
  return typeof s.cost === "function" && typeof s.sampleSize === "number";
}

/** Leaves the cursor where it was: nothing was placed. */
function pending(task: TaskRequest, snapshot: Snapshot): Plan {
  const { rejected } = selectCandidates(task, snapshot);
  return {
    kind: "pending",
    reason: pendingReason(task, rejected, snapshot.nodes.length),
    cursor: snapshot.cursor,
  };
}

function place(nodes: readonly NodeView[], index: number): Plan {
  return { kind: "place", nodeId: nodes[index].id, cursor: (index + 1) % nodes.length };
}

/**
 * Plans one task. For a {@link NodeCostScheduler} (all built-in ones) it selects, scores
 * and picks in a single pass from the cursor, allocating nothing but the plan; it gives
 * the same plan as {@link scheduleStepwise}. The placed plan's cursor is the index after
 * the chosen node; a pending plan keeps the cursor and names why no node fits.
 */
export function schedule(scheduler: Scheduler, task: TaskRequest, snapshot: Snapshot): Plan {
  if (!isNodeCost(scheduler)) return scheduleStepwise(scheduler, task, snapshot);
  const nodes = snapshot.nodes;
  const n = nodes.length;
  const limit = scheduler.sampleSize;
  // Spreading a group: fewest peers first, the scheduler's cost between equals. The sample
  // then stops only once a node without peers is in it (else every node is looked at).
  const peers = task.placement?.spread ? task.placement.peers : undefined;
  let index = startIndex(snapshot.cursor, n);
  let best = -1;
  let bestCost = Number.POSITIVE_INFINITY;
  let bestPeers = Number.POSITIVE_INFINITY;
  let found = 0;
  for (let i = 0; i < n; i++, index++) {
    if (index === n) index = 0;
    const node = nodes[index];
    if (misfit(task, node) !== 0) continue;
    const cost = scheduler.cost(task, node, snapshot);
    const p = peers === undefined ? 0 : (peers.get(node.id) ?? 0);
    if (best < 0 || p < bestPeers || (p === bestPeers && cost < bestCost)) {
      best = index;
      bestCost = cost;
      bestPeers = p;
    }
    if (++found >= limit && bestPeers === 0) break;
  }
  return best < 0 ? pending(task, snapshot) : place(nodes, best);
}

/**
 * Plans one task through the book's three steps — select candidates, score them, pick —
 * for any {@link Scheduler}. Throws when a scheduler picks a node that is not one of its
 * candidates: that would place a task where it does not fit.
 */
export function scheduleStepwise(
  scheduler: Scheduler,
  task: TaskRequest,
  snapshot: Snapshot,
): Plan {
  const candidates = scheduler.selectCandidates(task, snapshot);
  if (candidates.nodes.length === 0) {
    return {
      kind: "pending",
      reason: pendingReason(task, candidates.rejected, snapshot.nodes.length),
      cursor: snapshot.cursor,
    };
  }
  // Spreading a group: only the candidates with the fewest peers compete.
  const peers = task.placement?.spread ? task.placement.peers : undefined;
  let competing = candidates.nodes;
  if (peers !== undefined) {
    const count = (node: NodeView) => peers.get(node.id) ?? 0;
    const fewest = Math.min(...competing.map(count));
    competing = competing.filter((node) => count(node) === fewest);
  }
  const scores = scheduler.score(task, competing, snapshot);
  const chosen = scheduler.pick(scores, competing, snapshot);
  if (chosen === undefined) {
    return {
      kind: "pending",
      reason: `scheduler ${scheduler.name} picked none of ${candidates.nodes.length} fitting workers`,
      cursor: snapshot.cursor,
    };
  }
  if (!candidates.nodes.includes(chosen)) {
    throw new Error(`scheduler ${scheduler.name} picked ${chosen.id}, which is not a candidate`);
  }
  return place(snapshot.nodes, snapshot.nodes.indexOf(chosen));
}
