import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import { type ContextValues, createContextKey, createContextValues } from "@connectrpc/connect";
import { sanUris } from "../tls/identity.js";

/**
 * The client certificate a TLS connection presented, as the server saw it. Token clients
 * present none (and get no PeerCertificate at all).
 */
export interface PeerCertificate {
  /** Whether it chains to the server's CA and is in its validity period. */
  readonly verified: boolean;
  /** Why it did not verify (OpenSSL's code, e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE). */
  readonly error?: string;
  /** Its URI subject alternative names (cube://manager, cube://worker/<id>). */
  readonly uris: readonly string[];
  /** SHA-256 of its DER bytes, colon-separated hex, for logs. */
  readonly fingerprint: string;
}

/**
 * The handler context's view of the client certificate: set by the server for every call
 * from its own socket, never from anything the client sends (no header can fake it).
 */
export const PEER_CERTIFICATE = createContextKey<PeerCertificate | undefined>(undefined, {
  description: "client certificate of the TLS connection",
});

/**
 * The address the call's connection came from (undefined in router transports), for what is
 * counted per client: the streams of callers without a token.
 */
export const REMOTE_ADDRESS = createContextKey<string | undefined>(undefined, {
  description: "remote address of the connection",
});

/** What connect-node hands its contextValues hook. */
type NodeServerRequest = http.IncomingMessage | http2.Http2ServerRequest;

const seen = new WeakMap<object, PeerCertificate | null>();

/** The TLS socket under a request (HTTP/1.1 or HTTP/2), if it came over TLS. */
function tlsSocketOf(req: NodeServerRequest): TLSSocket | undefined {
  const socket =
    ("stream" in req ? (req.stream?.session?.socket as unknown) : undefined) ?? req.socket;
  return typeof (socket as TLSSocket | undefined)?.getPeerX509Certificate === "function"
    ? (socket as TLSSocket)
    : undefined;
}

/** The client certificate of the connection `req` came on (read once per connection). */
export function peerCertificate(req: NodeServerRequest): PeerCertificate | undefined {
  const socket = tlsSocketOf(req);
  if (!socket) return undefined;
  const known = seen.get(socket);
  if (known !== undefined) return known ?? undefined;
  const cert = socket.getPeerX509Certificate();
  const peer: PeerCertificate | undefined = cert
    ? {
        verified: socket.authorized,
        error: socket.authorized ? undefined : String(socket.authorizationError),
        uris: sanUris(cert.subjectAltName),
        fingerprint: cert.fingerprint256,
      }
    : undefined;
  seen.set(socket, peer ?? null);
  return peer;
}

/** connect-node's contextValues hook: every call carries its connection's certificate. */
export function peerContextValues(req: NodeServerRequest): ContextValues {
  return createContextValues().set(PEER_CERTIFICATE, peerCertificate(req));
}
