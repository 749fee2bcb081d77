/**
 * Cheap conversions for the scheduling loop. `Number(bigint)` costs ~20 ns in V8 and
 * `Math.pow` ~50 ns, against ~1,000 nodes per task; most calls repeat the previous
 * argument (one task's request, identical capacities), so a one-entry memo saves them.
 * The memos hold no state a caller can see: same argument, same answer.
 */

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
