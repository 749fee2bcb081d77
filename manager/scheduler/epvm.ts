/**
 * E-PVM (Amir, Awerbuch, Barak, Borgstrom, Keren: "An opportunity cost approach for job
 * assignment in a scalable computing cluster"), as the book has it: each resource costs
 * L^utilisation, and a node's cost is how much placing the task raises that, for memory
 * and for cpu, plus a term for the number of tasks (maxJobs 4); the lowest cost wins.
 *
 * What cube changes:
 * - the book's cpu terms cancel (L^cpuLoad − L^cpuLoad), so cpu never counts. Here the
 *   cpu utilisation after placing is the one before plus the task's cpu request relative
 *   to the node's capacity, so a node with less cpu in use wins among equals;
 * - utilisation before placing is max(declared allocation, measured usage) / capacity:
 *   the book adds the two, which counts a running task's memory twice (it is both
 *   allocated and in use), while the max respects both a task that has not yet grown to
 *   its request and a node busy with work cube does not know about;
 * - a dimension with capacity 0 (undeclared) has no utilisation: only the measured cpu
 *   load, if any, counts for cpu, and nothing for memory;
 * - candidates come from the shared selection (fits cpu, memory and disk), not only disk.
 */
import { costScheduler, DEFAULT_SAMPLE_SIZE } from "./cost-scheduler.js";
import { memoFloat, memoNumber } from "./numbers.js";
import type { NodeCostScheduler, NodeView, TaskRequest } from "./types.js";

/** The book's base, `LIEB` = 1.53960071783900203869, to the precision of a double. */
export const L = 1.539600717839002;
const LN_L = Math.log(L);

/** L^x, as e^(x·ln L): V8's Math.pow is several times slower than Math.exp. */
function pow(x: number): number {
  return Math.exp(x * LN_L);
}

/** The book's maxJobs: the task-count term is L^(k/maxJobs). */
export const MAX_JOBS = 4;

/** A utilisation from an untrusted measurement: finite and at least 0. */
function load(value: number | undefined): number {
  return value !== undefined && value > 0 && Number.isFinite(value) ? value : 0;
}

const capacityNumber = memoNumber();
const requestNumber = memoNumber();
const memStep = memoFloat((x) => pow(x) - 1);
const cpuStep = memoFloat((x) => pow(x) - 1);
const JOB_STEP = pow(1 / MAX_JOBS) - 1;
/** L^(k/maxJobs) for the task counts most nodes have. */
const JOBS = Array.from({ length: 256 }, (_, k) => pow(k / MAX_JOBS));

/**
 * The E-PVM cost of placing `task` on `node`, lower is better: the book's
 *   memCost = L^memAfter + L^((k+1)/maxJobs) − L^memBefore − L^(k/maxJobs)
 * plus cpuCost alike, computed as L^before·(L^(after−before) − 1) per term, which is the
 * same sum with two exponentials per node instead of eight (the test checks it against
 * the literal formula).
 */
export function epvmCost(task: TaskRequest, node: NodeView): number {
  const want = task.resources;
  const cap = node.capacity;
  let memCost = 0;
  if (cap.memoryBytes > 0n) {
    const allocated = node.allocated.memoryBytes;
    const measured = node.memoryUsedBytes;
    const held = measured !== undefined && measured > allocated ? measured : allocated;
    const capacity = capacityNumber(cap.memoryBytes);
    memCost = pow(Number(held) / capacity) * memStep(requestNumber(want.memoryBytes) / capacity);
  }
  let cpuBefore = load(node.cpuLoad);
  let cpuCost = 0;
  if (cap.cpu > 0) {
    cpuBefore = Math.max(cpuBefore, load(node.allocated.cpu / cap.cpu));
    cpuCost = pow(cpuBefore) * cpuStep(load(want.cpu / cap.cpu));
  }
  const k = Math.max(node.taskCount, 0);
  const jobs = (JOBS[k] ?? pow(k / MAX_JOBS)) * JOB_STEP;
  return memCost + cpuCost + 2 * jobs;
}

/**
 * Creates the E-PVM scheduler; it scores the first `sampleSize` fitting nodes from the
 * cursor (see {@link DEFAULT_SAMPLE_SIZE}).
 */
export function createEpvm(sampleSize = DEFAULT_SAMPLE_SIZE): NodeCostScheduler {
  return costScheduler("epvm", sampleSize, epvmCost);
}
