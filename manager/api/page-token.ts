import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Page tokens are opaque to clients: base64url of a kind and a position (a revision), so a
 * token of one list is not mistaken for another's and positions stay stable as tasks come.
 */
export function encodePageToken(kind: string, position: bigint): string {
  return Buffer.from(`${kind}:${position}`).toString("base64url");
}

/** The position in `token` (0 for an empty token); INVALID_ARGUMENT naming `field` otherwise. */
export function decodePageToken(token: string, kind: string, field = "page_token"): bigint {
  if (token === "") return 0n;
  const text = Buffer.from(token, "base64url").toString();
  const m = /^([a-z]+):(\d{1,20})$/.exec(text);
  if (!m || m[1] !== kind) {
    throw new ConnectError(`${field}: not a page token of this list`, Code.InvalidArgument);
  }
  return BigInt(m[2] as string);
}

/** A page size from a request: 0 means `fallback`, anything above `max` is capped. */
export function pageSize(requested: number, fallback = 100, max = 1000): number {
  return requested === 0 ? fallback : Math.min(requested, max);
}
