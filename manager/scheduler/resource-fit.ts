/**
 * Resource fit: places a task only where its declared cpu, memory and disk fit beside
 * what is already allocated (the shared candidate selection refuses any over-commit), and
 * among those prefers the node left least allocated — kube-scheduler's LeastAllocated.
 *
 * Why spreading and not best fit (bin packing): cube's workers are long-lived machines,
 * not autoscaled ones, so an emptier node is not a saving; spreading leaves headroom for
 * tasks that grow past their request, keeps a worker failure from taking most tasks with
 * it, and makes rescheduling after a failure more likely to find room everywhere.
 *
 * The score is the mean, over cpu and memory (the dimensions a task competes for while it
 * runs; disk only has to fit), of (allocated + request) / capacity, from declared amounts
 * only so placements are predictable; a dimension with capacity 0 is not limited and
 * does not count. The task count breaks near-ties ({@link TASK_WEIGHT} per task), so
 * tasks that declare nothing still spread by number instead of piling on one node.
 */
import { costScheduler, DEFAULT_SAMPLE_SIZE } from "./cost-scheduler.js";
import { memoNumber } from "./numbers.js";
import type { NodeCostScheduler, NodeView, TaskRequest } from "./types.js";

/** What one task on a node adds to its score: 2^-30, a thousand tasks ≈ 0.0001 % of capacity. */
export const TASK_WEIGHT = 2 ** -30;

const capacityNumber = memoNumber();
const requestNumber = memoNumber();

/** The fit cost of placing `task` on `node`: the mean allocated fraction after placing it. */
export function fitCost(task: TaskRequest, node: NodeView): number {
  const want = task.resources;
  const cap = node.capacity;
  const used = node.allocated;
  let sum = 0;
  let dims = 0;
  if (cap.cpu > 0) {
    sum += (used.cpu + Math.max(want.cpu, 0)) / cap.cpu;
    dims++;
  }
  if (cap.memoryBytes > 0n) {
    const m = node.memory;
    sum +=
      m !== undefined
        ? (m.allocated + requestNumber(want.memoryBytes)) / m.capacity
        : (Number(used.memoryBytes) + requestNumber(want.memoryBytes)) /
          capacityNumber(cap.memoryBytes);
    dims++;
  }
  const mean = dims > 0 && Number.isFinite(sum) ? sum / dims : 0;
  return mean + Math.max(node.taskCount, 0) * TASK_WEIGHT;
}

/**
 * Creates the resource-fit scheduler; it scores the first `sampleSize` fitting nodes from
 * the cursor (see {@link DEFAULT_SAMPLE_SIZE}).
 */
export function createResourceFit(sampleSize = DEFAULT_SAMPLE_SIZE): NodeCostScheduler {
  return costScheduler("fit", sampleSize, fitCost);
}
