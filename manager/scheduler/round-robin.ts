/**
 * Round-robin: the first node at or after the snapshot's cursor that fits the task. The
 * plan's cursor is the index after the chosen node, so the next task starts there; nodes
 * that do not fit are skipped, never placed on.
 */
import { costScheduler } from "./cost-scheduler.js";
import type { NodeCostScheduler } from "./types.js";

/**
 * Creates the round-robin scheduler. Every fitting node costs the same, so only the
 * first one from the cursor needs finding: its sample size is 1.
 */
export function createRoundRobin(): NodeCostScheduler {
  return costScheduler("round-robin", 1, () => 0);
}
