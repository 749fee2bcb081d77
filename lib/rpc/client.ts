import { isIP } from "node:net";
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

/** Whether `host` (of a listen or a dial address) is loopback: 127.0.0.0/8, ::1 or localhost. */
export function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  return host === "::1";
}

/** The host of a dial address (host:port, [v6]:port or an http(s) URL); undefined if none. */
function dialHost(address: string): string | undefined {
  try {
    const url = new URL(/^https?:\/\//i.test(address) ? address : `http://${address}`);
    return url.hostname.replace(/^\[(.*)\]$/, "$1");
  } catch {
    return undefined; // not dialable at all: the dial says so
  }
}

/** What {@link plaintextDialProblem} weighs. */
export interface PlaintextDial {
  /** The server's address, as given (host:port or a URL). */
  readonly address: string;
  /** The client dials TLS (it has the cluster's CA). */
  readonly tls: boolean;
  /** Plaintext off loopback was accepted in so many words (--insecure, CUBE_INSECURE=1). */
  readonly insecure: boolean;
  /** What would cross the network in the clear, e.g. "the token and the task specs". */
  readonly exposes: string;
}

/**
 * Why a client must not dial `address` in plaintext, or undefined when it may: TLS (a CA, or an
 * https:// URL) and loopback (127.0.0.0/8, ::1, localhost) always may; another host only with
 * `insecure`, as kubeadm refuses to join over an unverified channel unless told. The client
 * adds how to get TLS in its own words. The listening side's rule is lib/rpc/server.ts
 * `guardPlaintext`; the two share `--insecure` (CUBE_INSECURE=1): "I accept plaintext off
 * loopback".
 */
export function plaintextDialProblem(o: PlaintextDial): string | undefined {
  if (o.tls || o.insecure || /^https:\/\//i.test(o.address)) return undefined;
  const host = dialHost(o.address);
  if (host === undefined || isLoopback(host)) return undefined;
  return `refusing to talk plaintext to ${o.address}, which is not loopback: anyone on the network could read ${o.exposes}`;
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
