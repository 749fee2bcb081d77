/**
 * Calls `fn(i)` for i in [0, count) with at most `concurrency` calls in flight; resolves
 * when all are done, rejects with the first failure (letting the calls in flight finish).
 */
export async function runPool(
  count: number,
  concurrency: number,
  fn: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  let failure: unknown;
  const lane = async () => {
    while (failure === undefined && next < count) {
      const i = next++;
      try {
        await fn(i);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  if (failure !== undefined) throw failure;
}
