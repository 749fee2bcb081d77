/**
 * The book's three-step interface derived from a per-node cost, so that the stepwise path
 * (select → score → pick) and `schedule()`'s single pass share one definition of "best".
 */
import { selectCandidates } from "./candidates.js";
import type { NodeCostScheduler, NodeView, Snapshot, TaskRequest } from "./types.js";

/**
 * How many fitting nodes E-PVM and resource fit score per task, by default: 100, like
 * kube-scheduler's minFeasibleNodesToFind. Up to 100 workers every node competes, which is
 * the book's behaviour; beyond that the cost of a placement stays bounded (≈ 100 × ~60 ns)
 * instead of growing with the cluster — a full E-PVM pass over 1,000 nodes manages only
 * ~10,000 placements/s on a 2-core machine, too few for the manager's 20,000/s. The window
 * starts at the cursor, which moves past each chosen node, so every node takes its turn in
 * the sample; the price is that the best node may lie outside this task's window.
 */
export const DEFAULT_SAMPLE_SIZE = 100;

/**
 * The candidate with the lowest score; ties (and unscored candidates, and NaN) go to the
 * one listed first — candidates come in rotation order from the cursor, so "first" is the
 * first at or after the cursor. Undefined when there are no candidates.
 */
export function pickLowest(
  scores: ReadonlyMap<string, number>,
  candidates: readonly NodeView[],
): NodeView | undefined {
  let best: NodeView | undefined;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const node of candidates) {
    const score = scores.get(node.id) ?? Number.POSITIVE_INFINITY;
    if (best === undefined || score < bestScore) {
      best = node;
      bestScore = score;
    }
  }
  return best;
}

/**
 * A {@link NodeCostScheduler} from a name, a sample size and a cost: selection is the
 * shared {@link selectCandidates} capped at `sampleSize`, the score of a node is its
 * cost, and the pick is {@link pickLowest}.
 */
export function costScheduler(
  name: string,
  sampleSize: number,
  cost: (task: TaskRequest, node: NodeView, snapshot: Snapshot) => number,
): NodeCostScheduler {
  if (!(sampleSize >= 1)) throw new Error(`sample size must be at least 1, got ${sampleSize}`);
  return {
    name,
    sampleSize,
    cost,
    selectCandidates: (task, snapshot) => selectCandidates(task, snapshot, sampleSize),
    score(task, candidates, snapshot) {
      const scores = new Map<string, number>();
      for (const node of candidates) scores.set(node.id, cost(task, node, snapshot));
      return scores;
    },
    pick: (scores, candidates) => pickLowest(scores, candidates),
  };
}
