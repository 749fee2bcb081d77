import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { type ClientTls, expectUri } from "../tls/identity.js";

/** How long a client's HTTP/2 ping may go unanswered before it drops the connection. */
const PING_TIMEOUT_MS = 10_000;

/**
 * A gRPC transport (HTTP/2, h2c) to a cube server at host:port or a full URL. HTTP/2
 * pings notice a dead peer that never sent a FIN, within about 11 s: a ping may take
 * {@link PING_TIMEOUT_MS}, because a manager that stalls for a few seconds (a GC pause, a
 * saturated event loop, a VM without CPU) answers afterwards, and a 1 s timeout failed
 * every call in flight with UNAVAILABLE "PING timed out".
 *
 * With `tls`, it dials TLS (https) and trusts only the cluster's CA (see {@link ClientTls}).
 */
export function grpcTransport(
  address: string,
  options: {
    pingIntervalMs?: number;
    token?: string;
    tls?: ClientTls;
    /** Run on every call, after the token's. */
    interceptors?: readonly Interceptor[];
  } = {},
): Transport {
  const baseUrl = /^https?:\/\//.test(address)
    ? address
    : `${options.tls ? "https" : "http"}://${address}`;
  return createGrpcTransport({
    baseUrl,
    ...(options.tls ? { nodeOptions: tlsOptions(options.tls) } : {}),
    pingIntervalMs: options.pingIntervalMs ?? 1000,
    pingTimeoutMs: PING_TIMEOUT_MS,
    // Idle connections are pinged too, so a CLI watch notices a dead manager. connect-node
    // 2.3 no longer crashes on a ping racing a GOAWAY (test/client-transport.test.ts).
    pingIdleConnection: true,
    interceptors: [
      ...(options.token ? [bearer(options.token)] : []),
      ...(options.interceptors ?? []),
    ],
  });
}

/** Sends `token` as `Authorization: Bearer <token>` with every call. */
export function bearer(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

/** Node's TLS client options for {@link ClientTls}. */
export function tlsOptions(tls: ClientTls): {
  ca: string;
  cert?: string;
  key?: string;
  checkServerIdentity?: ReturnType<typeof expectUri>;
} {
  return {
    ca: tls.ca,
    ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
    ...(tls.expect ? { checkServerIdentity: expectUri(tls.expect) } : {}),
  };
}
