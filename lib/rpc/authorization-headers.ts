/**
 * How many Authorization headers a request carried. Node keeps the first of a repeated
 * Authorization header and drops the others without a word (HTTP/1.1 and HTTP/2 alike), so a
 * request with two — a proxy that added its own, a client that merged two configurations —
 * would be judged by whichever came first. The count comes from the raw headers, for the
 * authorization interceptors to refuse such a request.
 */
import type * as http from "node:http";
import type * as http2 from "node:http2";
import { createContextKey } from "@connectrpc/connect";

/** The number of Authorization headers of the call's request (1 when not counted). */
export const AUTHORIZATION_HEADERS = createContextKey<number>(1, {
  description: "how many Authorization headers the request carried",
});

/** Counts the Authorization headers of a request, from its raw headers. */
export function countAuthorizationHeaders(
  req: http.IncomingMessage | http2.Http2ServerRequest,
): number {
  let n = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]?.toLowerCase() === "authorization") n++;
  }
  return n;
}

/** The refusal of a request that carried `count` Authorization headers, if more than one. */
export function repeatedAuthorization(count: number): string | undefined {
  return count > 1
    ? `authorization: sent ${count} times; send one "Authorization: Bearer <token>"`
    : undefined;
}
