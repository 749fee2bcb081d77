import * as http from "node:http";
import * as http2 from "node:http2";
import {
  type AddressInfo,
  createServer as createNetServer,
  type Server as NetServer,
  type Socket,
} from "node:net";
import * as tls from "node:tls";
import type { DescFile } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ConnectRouterOptions,
  createConnectRouter,
  createContextValues,
  type HandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { HealthCheckResponse_ServingStatus as HealthStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { LogThrottle } from "../log-throttle.js";
import type { Logger } from "../logger.js";
import { AUTHORIZATION_HEADERS, countAuthorizationHeaders } from "./authorization-headers.js";
import { isLoopback } from "./client.js";
import { StreamDrain } from "./drain-streams.js";
import { SESSION_WINDOW, STREAM_WINDOW } from "./flow-control.js";
import { HealthState, registerHealth } from "./health.js";
import { EXCHANGE, type Gate, nodeHandler } from "./http-layer.js";
import { PEER_CERTIFICATE, peerContextValues, REMOTE_ADDRESS } from "./peer.js";
import type { PlainHandler } from "./plain-http.js";
import { registerReflection } from "./reflection.js";
import { strictInput } from "./strict-input.js";

/**
 * Answers are never compressed: cube's traffic stays on loopback and LANs, where gzip costs
 * more CPU than it saves in time; and connect-node compresses through Node's async zlib,
 * whose chunks each wait for a turn of the event loop — on a busy manager, a RunTasks
 * answer of 5,000 tasks took ~0.5 s to leave. (gRPC's own servers do not compress unless
 * told to either.)
 */
const NO_COMPRESSION = Number.MAX_SAFE_INTEGER;

/**
 * Bounds on what one client can make a server hold. Every input has a size bound: these are
 * the transport's; validate-spec.ts has the fields'.
 */
export interface ServerLimits {
  /**
   * Largest request message, after decompression: a larger one is RESOURCE_EXHAUSTED, and a
   * compressed body stops inflating there (a gzip bomb costs at most this much). Default
   * 4 MiB, gRPC's own default; a RunTasks of 5,000 tasks is about 1 MiB.
   */
  maxMessageBytes: number;
  /** A connection that has not sent its first bytes within this is closed. Default 10 s. */
  firstBytesTimeoutMs: number;
  /**
   * An HTTP/2 connection with no stream open and no traffic (pings count) for this long is
   * closed. Default 5 min. HTTP/1.1 connections close after Node's 5 s keep-alive.
   */
  idleTimeoutMs: number;
  /** Streams open at once on one HTTP/2 connection. Default 1,000. */
  maxConcurrentStreams: number;
  /** Request headers, in bytes, on either protocol. Default 16 KiB. */
  maxHeaderBytes: number;
  /** Connections open at once; more are refused. Default 10,000. */
  maxConnections: number;
  /**
   * How long after its headers the whole body of a call whose request is one message (unary,
   * server-streaming) may take to come in: past it the call is DEADLINE_EXCEEDED and the rest
   * of the body is not read (over HTTP/1.1 the connection closes, over HTTP/2 the stream is
   * reset). Client and bidirectional streams (the worker's, reflection) are not timed: their
   * messages come as long as they stay open. Default 30 s: 4 MiB at about 1 Mbit/s.
   */
  bodyTimeoutMs: number;
  /**
   * Largest request message of the services every server answers anyone (grpc.health.v1,
   * reflection), after decompression: what a caller without a token can make a server hold
   * per call. Default 64 KiB (their requests name a service or a symbol).
   */
  maxPublicMessageBytes: number;
}

/** The limits a server has unless told otherwise (see {@link ServerLimits}). */
export const DEFAULT_LIMITS: Readonly<ServerLimits> = {
  maxMessageBytes: 4 << 20,
  firstBytesTimeoutMs: 10_000,
  idleTimeoutMs: 5 * 60_000,
  maxConcurrentStreams: 1000,
  maxHeaderBytes: 16 << 10,
  maxConnections: 10_000,
  bodyTimeoutMs: 30_000,
  maxPublicMessageBytes: 64 << 10,
};

/** Calls refused by a server's gates that are logged in one second; the rest are counted. */
export const REFUSALS_LOGGED_PER_SECOND = 10;

/** What {@link startServer} needs. */
export interface ServerOptions {
  /** host:port to listen on; port 0 picks a free one. */
  listen: string;
  /** Adds the server's own services to the router. */
  routes: (router: ConnectRouter) => void;
  /** Proto files of the services, offered through gRPC reflection. */
  files: readonly DescFile[];
  /**
   * Answers plain HTTP requests that are no RPC (GET /metrics, the dashboard's files), over
   * HTTP/1.1 and HTTP/2 alike. Unset: such requests get 404.
   */
  fallback?: PlainHandler;
  /** Overrides of {@link DEFAULT_LIMITS}. */
  limits?: Partial<ServerLimits>;
  /**
   * Run in order for every RPC (grpc.health.v1 and reflection included) once its headers are
   * in, before a byte of its body is read: where the server's authorization decision is made.
   * A gate that throws refuses the call with its error, answered at once: the body is never
   * read, decompressed or parsed, and a client still sending it is not waited for.
   */
  gates?: readonly Gate[];
  /**
   * Run for every RPC once the gates let it in, on its request message (a stream's as they
   * come), before the strict input check.
   */
  interceptors?: readonly Interceptor[];
  /**
   * Where calls refused by the gates are logged (at most {@link REFUSALS_LOGGED_PER_SECOND} a
   * second, then a count of the rest); unset: not logged.
   */
  logger?: Logger;
  /**
   * Refuse unknown fields and enum values (strictInput). Default true; only test fakes that
   * must see whatever a peer sends turn it off.
   */
  strict?: boolean;
  /**
   * Serve TLS instead of plaintext (see {@link ServerTls}). Unset: plaintext, h2c and
   * HTTP/1.1 told apart by their first bytes.
   */
  tls?: ServerTls;
  /**
   * Who serves, as its clients' errors name it ("the manager"): an open stream ended by
   * {@link Server.close} ends with UNAVAILABLE "<name> is shutting down". Default "the server".
   */
  name?: string;
}

/**
 * A TLS server's material, PEM. ALPN picks HTTP/2 (gRPC, Connect, gRPC-Web) or HTTP/1.1
 * (Connect, gRPC-Web, curl, browsers, Prometheus) on the one port. Client certificates are
 * asked for but not required (token clients have none): one that does not chain to `ca` is
 * let through the handshake and marked unverified in the call's context
 * (lib/rpc/peer.ts PEER_CERTIFICATE), for the server's interceptors to refuse and log.
 */
export interface ServerTls {
  /**
   * The server's private key; unset (with `cert`) until {@link Server.updateTls} gives one:
   * every handshake fails meanwhile.
   */
  readonly key?: string;
  /** The server's certificate, followed by the CA's (the chain clients are sent). */
  readonly cert?: string;
  /** The CA client certificates must chain to (unset: none can). */
  readonly ca?: string;
}

/** A running server. */
export interface Server {
  /** host:port actually bound (the real port when 0 was asked for). */
  readonly address: string;
  /** The grpc.health.v1 state; set NOT_SERVING while draining. */
  readonly health: HealthState;
  /**
   * Replaces the TLS key, certificate and CA for new connections (a renewed certificate);
   * open connections keep theirs. Throws on a plaintext server.
   */
  updateTls(material: ServerTls): void;
  /**
   * Stops accepting, ends open response streams with UNAVAILABLE (health watchers hear
   * NOT_SERVING first), closes open sessions and resolves once closed; a peer that does
   * not let go is cut off after 1 s.
   */
  close(): Promise<void>;
}

/** Splits "host:port" (or ":port", or "[::1]:port") into its parts. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen);
  if (!m) throw new Error(`listen address "${listen}" is not host:port`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`listen address "${listen}": port out of range`);
  return { host: m[1] ?? (m[2] || "127.0.0.1"), port };
}

/** What {@link guardPlaintext} needs to decide about a listen address. */
export interface PlaintextListen {
  /** The listen address, as given. */
  readonly listen: string;
  /** The server has TLS. */
  readonly tls: boolean;
  /** Plaintext on a non-loopback address was asked for (--insecure, CUBE_INSECURE=1). */
  readonly insecure: boolean;
  /** What anyone on the network could read, e.g. "tokens and task specs". */
  readonly exposes: string;
  /** How to get TLS instead, e.g. "serve TLS (--tls, CUBE_TLS=1)". */
  readonly remedy: string;
  readonly logger: Logger;
}

/**
 * Refuses plaintext on a non-loopback address unless asked for with --insecure (then warns
 * in the log): the manager and the worker decide it alike.
 */
export function guardPlaintext(o: PlaintextListen): void {
  if (o.tls || isLoopback(parseListen(o.listen).host)) return;
  if (!o.insecure) {
    throw new Error(
      `refusing to serve plaintext on ${o.listen}: anyone on the network could read ${o.exposes}; ${o.remedy}, listen on 127.0.0.1, or pass --insecure (CUBE_INSECURE=1) on a network you trust`,
    );
  }
  o.logger.warn(
    { listen: o.listen },
    `INSECURE: serving plaintext on a non-loopback address; anyone on the network can read ${o.exposes}`,
  );
}

/** The first bytes of every HTTP/2 connection with prior knowledge (RFC 9113 §3.4). */
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * Whether `head` (the first bytes a client sent) opens an HTTP/2 connection; undefined
 * while too few bytes have arrived to tell. No HTTP/1.x request line starts like the
 * preface, so its first bytes decide.
 */
export function opensHttp2(head: Uint8Array): boolean | undefined {
  const n = Math.min(head.length, H2_PREFACE.length);
  for (let i = 0; i < n; i++) if (head[i] !== H2_PREFACE[i]) return false;
  return n === H2_PREFACE.length ? true : undefined;
}

/**
 * Starts a server speaking gRPC, gRPC-Web and Connect on one plaintext port, over HTTP/2
 * with prior knowledge (h2c: gRPC clients, grpcurl, buf curl) and over HTTP/1.1 (curl
 * without flags, browsers, Prometheus): each connection goes to the HTTP/2 or the HTTP/1.1
 * server by its first bytes. gRPC needs HTTP/2 (trailers); Connect and gRPC-Web work on
 * both. grpc.health.v1 and gRPC server reflection (v1 and v1alpha) are served beside the
 * given routes, so grpcurl and buf curl work without .proto files.
 */
export async function startServer(options: ServerOptions): Promise<Server> {
  const { host, port } = parseListen(options.listen);
  const health = new HealthState();
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const drain = new StreamDrain(options.name);
  const refusals = options.logger
    ? new LogThrottle(options.logger, "call refused", REFUSALS_LOGGED_PER_SECOND)
    : undefined;
  const gates = options.gates ?? [];
  const common: ConnectRouterOptions = {
    // close() aborts every handler's signal: open watches end at once (UNAVAILABLE).
    shutdownSignal: drain.signal,
    // Answers go uncompressed (compressed requests are still read; see NO_COMPRESSION).
    compressMinBytes: NO_COMPRESSION,
    acceptCompression: [compressionGzip, compressionBrotli],
    // An unknown JSON field or enum name is an error, not a silent drop; strictInput does
    // the same for binary requests.
    jsonOptions: { ignoreUnknownFields: false },
    async requestGate(call) {
      try {
        for (const gate of gates) await gate(call);
      } catch (error) {
        call.values.get(EXCHANGE)?.leaveBody();
        refusals?.warn(refusal(call, error));
        throw error;
      }
    },
    interceptors: [
      ...(options.interceptors ?? []),
      ...(options.strict === false ? [] : [strictInput]),
      drain.interceptor,
    ],
  };
  const served = createConnectRouter({ ...common, readMaxBytes: limits.maxMessageBytes });
  options.routes(served);
  // Each service by its full name too, as probes that name one (grpc_health_probe -service,
  // Envoy, Consul) ask; they share the server's fate (draining, a store that cannot write).
  for (const { service } of served.handlers) health.set(service.typeName, HealthStatus.SERVING);
  // What anyone may call reads small messages only.
  const open = createConnectRouter({ ...common, readMaxBytes: limits.maxPublicMessageBytes });
  registerHealth(open, health);
  registerReflection(open, options.files);
  const handler = nodeHandler({
    routers: [served, open],
    fallback: options.fallback,
    // Over TLS, each call carries its connection's client certificate, from the socket;
    // every call, how many Authorization headers it had (Node keeps only the first) and
    // the address it came from.
    contextValues: (req) =>
      (options.tls ? peerContextValues(req) : createContextValues())
        .set(AUTHORIZATION_HEADERS, countAuthorizationHeaders(req))
        .set(REMOTE_ADDRESS, req.socket?.remoteAddress),
    maxHeaderBytes: limits.maxHeaderBytes,
    bodyTimeoutMs: limits.bodyTimeoutMs,
  });
  const h2 = http2.createServer(
    {
      settings: {
        initialWindowSize: STREAM_WINDOW,
        maxConcurrentStreams: limits.maxConcurrentStreams,
        maxHeaderListSize: limits.maxHeaderBytes,
      },
      maxSessionInvalidFrames: 100,
    },
    handler,
  );
  const h1 = http.createServer(
    {
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.firstBytesTimeoutMs,
      // Every request whole within its two deadlines (Node's default is 5 minutes): what
      // no call times itself (a POST to the fallback) is cut here.
      requestTimeout: limits.firstBytesTimeoutMs + limits.bodyTimeoutMs,
    },
    handler,
  );
  // The port itself: over TLS, ALPN hands each connection to h2 or h1 (no ALPN: HTTP/1.1);
  // in plaintext, its first bytes do.
  const server = options.tls
    ? tlsListener(options.tls, limits, h2, h1)
    : plaintextListener(limits, h2, h1);
  // http2 close() waits for every session to end on its own, and a worker's stream
  // never does: keep them to close them ourselves.
  const sessions = new Set<http2.Http2Session>();
  h2.on("session", (session) => {
    session.setLocalWindowSize(SESSION_WINDOW);
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    // Idle = no stream open and no frame (a ping counts) for idleTimeoutMs: a long watch
    // stream is not idle, a connection left open and silent is.
    let open = 0;
    session.on("stream", (stream) => {
      open++;
      stream.once("close", () => open--);
    });
    session.setTimeout(limits.idleTimeoutMs, () => {
      if (open === 0) session.close();
    });
  });
  // A destroyed session still ends its socket gracefully, which never completes when
  // the peer stopped reading (a dead network): keep the sockets to destroy them too.
  const sockets = new Set<Socket>();
  server.maxConnections = limits.maxConnections;
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  const shownHost = bound.family === "IPv6" ? `[${bound.address}]` : bound.address;
  return {
    address: `${shownHost}:${bound.port}`,
    health,
    updateTls(material) {
      if (!(server instanceof tls.Server))
        throw new Error("a plaintext server has no TLS to update");
      server.setSecureContext(secureContext(material));
    },
    close() {
      health.shutdown();
      drain.start();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sessions) s.close();
        h1.closeAllConnections();
        // A peer that never answers GOAWAY must not hold the process up.
        const timer = setTimeout(() => {
          for (const s of sessions) s.destroy();
          for (const socket of sockets) socket.destroy();
        }, 1000);
        timer.unref();
      });
    },
  };
}

/** The fields of a refusal's log line: what was called, from where, by whom, and why not. */
function refusal(call: HandlerContext, error: unknown): Record<string, unknown> {
  const refused = ConnectError.from(error);
  const peer = call.values.get(PEER_CERTIFICATE);
  return {
    procedure: `/${call.service.typeName}/${call.method.name}`,
    code: Code[refused.code],
    why: refused.rawMessage,
    from: call.values.get(REMOTE_ADDRESS),
    authorization: call.requestHeader.has("authorization") ? "sent" : "none",
    ...(peer ? { certificate: peer.fingerprint, names: peer.uris } : {}),
  };
}

/** Plaintext: each connection goes to h2 (h2c) or h1 once its first bytes are in. */
function plaintextListener(
  limits: ServerLimits,
  h2: http2.Http2Server,
  h1: http.Server,
): NetServer {
  return createNetServer({ pauseOnConnect: true }, (socket) => {
    let head = Buffer.alloc(0);
    const onReadable = () => {
      let chunk: Buffer | null;
      // biome-ignore lint/suspicious/noAssignInExpressions: read until the buffer is drained
      while ((chunk = socket.read() as Buffer | null) !== null) head = Buffer.concat([head, chunk]);
      const h2c = opensHttp2(head);
      if (h2c === undefined) return; // fewer bytes than it takes to tell: wait for more
      socket.off("readable", onReadable);
      socket.off("end", onEnd);
      socket.setTimeout(0);
      socket.unshift(head);
      (h2c ? h2 : h1).emit("connection", socket);
    };
    const onEnd = () => socket.destroy();
    // A client that connects and says nothing holds a socket for nothing.
    socket.setTimeout(limits.firstBytesTimeoutMs, () => socket.destroy());
    socket.on("readable", onReadable);
    socket.once("end", onEnd);
    socket.once("error", () => socket.destroy());
  });
}

function secureContext(material: ServerTls): tls.SecureContextOptions {
  return { key: material.key, cert: material.cert, ca: material.ca };
}

/**
 * TLS 1.2+ with ALPN h2 and http/1.1; each connection goes to h2 or h1 once its handshake is
 * done, so both keep the limits they have in plaintext. The handshake must be over within
 * the first-bytes timeout. A plaintext client fails its handshake and is closed.
 */
function tlsListener(
  material: ServerTls,
  limits: ServerLimits,
  h2: http2.Http2Server,
  h1: http.Server,
): tls.Server {
  const server = tls.createServer(
    {
      ...secureContext(material),
      minVersion: "TLSv1.2",
      ALPNProtocols: ["h2", "http/1.1"],
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: limits.firstBytesTimeoutMs,
    },
    (socket) => {
      socket.setNoDelay(true);
      (socket.alpnProtocol === "h2" ? h2 : h1).emit("connection", socket);
    },
  );
  // A failed handshake (plaintext, an unknown CA on the client's side, a timeout) has
  // already closed its socket; nothing else to do.
  server.on("tlsClientError", () => undefined);
  return server;
}
