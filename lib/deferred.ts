/** A promise with its settle functions, for work that completes somewhere else. */
export interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(error: Error): void;
}

/**
 * A new {@link Deferred}. Its rejection is marked handled: a failed write nobody awaits
 * must not crash the process (those who await it still see the error).
 */
export function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}
