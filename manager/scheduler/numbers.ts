/**
 * Cheap conversions for the scheduling loop. `Number(bigint)` costs ~20 ns in V8 and
 * `Math.pow` ~50 ns, against ~1,000 nodes per task; most calls repeat the previous
 * argument (one task's request, identical capacities), so a one-entry memo saves them.
 * The memos hold no state a caller can see: same argument, same answer.
 */
import type { MemoryNumbers } from "./types.js";

/** `Number(x)` behind a one-entry memo: for values that repeat from call to call. */
export function memoNumber(): (x: bigint) => number {
  let key = -1n;
  let value = -1;
  return (x) => {
    if (x !== key) {
      key = x;
      value = Number(x);
    }
    return value;
  };
}

/** `f(x)` behind a one-entry memo, for a costly pure `f` of a number that often repeats. */
export function memoFloat(f: (x: number) => number): (x: number) => number {
  let key = Number.NaN;
  let value = Number.NaN;
  return (x) => {
    if (x !== key) {
      key = x;
      value = f(x);
    }
    return value;
  };
}

/** Below this, amounts, and the sum of two, are exact as numbers. */
export const EXACT_BELOW = 2n ** 52n;

/**
 * The {@link NodeView.memory} of a node with these amounts, written into `into` when given
 * (a view keeps one object); undefined when either is too big to be exact as a number.
 */
export function memoryNumbers(
  capacity: bigint,
  allocated: bigint,
  into?: { capacity: number; allocated: number },
): MemoryNumbers | undefined {
  if (capacity < 0n || capacity >= EXACT_BELOW || allocated < 0n || allocated >= EXACT_BELOW) {
    return undefined;
  }
  const out = into ?? { capacity: 0, allocated: 0 };
  out.capacity = Number(capacity);
  out.allocated = Number(allocated);
  return out;
}
