import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Whether a watch that failed with `error` is worth opening again: the manager went away or
 * restarted (the deployment, drain or task it was following carries on without us).
 */
export function isTransient(error: unknown): boolean {
  if (!(error instanceof ConnectError)) return false;
  return [Code.Unavailable, Code.Canceled, Code.Aborted, Code.Unknown, Code.Internal].includes(
    error.code,
  );
}
