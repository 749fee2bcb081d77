import type { Message } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createContextKey,
  type HandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import { JobService } from "../../gen/cube/v1/job_service_pb.js";
import { MetricsService } from "../../gen/cube/v1/metrics_pb.js";
import { NodeService } from "../../gen/cube/v1/node_service_pb.js";
import { TaskService } from "../../gen/cube/v1/task_service_pb.js";
import { Role, type Token, TokenService } from "../../gen/cube/v1/token_service_pb.js";
import { WorkerService } from "../../gen/cube/v1/worker_service_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { type Clock, MAX_TIMER_MS, type TimerHandle } from "../../lib/clock.js";
import type { Logger } from "../../lib/logger.js";
import { quote } from "../../lib/quote.js";
import {
  AUTHORIZATION_HEADERS,
  repeatedAuthorization,
} from "../../lib/rpc/authorization-headers.js";
import type { Gate } from "../../lib/rpc/http-layer.js";
import { PEER_CERTIFICATE, type PeerCertificate, REMOTE_ADDRESS } from "../../lib/rpc/peer.js";
import { workerOf } from "../../lib/tls/identity.js";
import { roleIncludes, type TokenTable } from "../core/token-table.js";

/**
 * Who may call a method: anyone; a token holding the role; a worker's own credential (role
 * worker, bound to a worker id by JoinWorker); or a join token (role worker, bound to none).
 * The last two are apart from the roles: an admin token, which includes every role, is
 * neither, so it can neither join nor speak for a worker.
 */
export type Need = "anyone" | Role | "worker-credential" | "join-token";

const proc = (service: { typeName: string }, method: string) => `/${service.typeName}/${method}`;

/**
 * Every method the manager serves and who may call it: the one table of the authorization
 * decision. A method missing here is refused to everyone (test/auth.test.ts checks that every
 * served method has an entry).
 */
export const POLICY: ReadonlyMap<string, Need> = new Map<string, Need>([
  [proc(TaskService, "RunTask"), Role.OPERATOR],
  [proc(TaskService, "RunTasks"), Role.OPERATOR],
  [proc(TaskService, "StopTask"), Role.OPERATOR],
  [proc(TaskService, "GetTask"), Role.READ],
  [proc(TaskService, "ListTasks"), Role.READ],
  [proc(TaskService, "ListTaskEvents"), Role.READ],
  [proc(TaskService, "WatchTasks"), Role.READ],
  [proc(TaskService, "TaskLogs"), Role.READ],
  [proc(WorkerService, "Connect"), "worker-credential"],
  [proc(WorkerService, "ListWorkers"), Role.READ],
  [proc(WorkerService, "GetWorker"), Role.READ],
  [proc(WorkerService, "WatchWorkers"), Role.READ],
  [proc(MetricsService, "GetNodeMetrics"), Role.READ],
  [proc(MetricsService, "ListNodeMetrics"), Role.READ],
  [proc(MetricsService, "ListTaskMetrics"), Role.READ],
  [proc(MetricsService, "WatchMetrics"), Role.READ],
  [proc(TokenService, "CreateToken"), Role.ADMIN],
  [proc(TokenService, "ListTokens"), Role.ADMIN],
  [proc(TokenService, "RevokeToken"), Role.ADMIN],
  [proc(JobService, "ApplyJob"), Role.OPERATOR],
  [proc(JobService, "ScaleJob"), Role.OPERATOR],
  [proc(JobService, "StopJob"), Role.OPERATOR],
  [proc(JobService, "RevertJob"), Role.OPERATOR],
  [proc(JobService, "GetJob"), Role.READ],
  [proc(JobService, "ListJobs"), Role.READ],
  [proc(JobService, "ListJobVersions"), Role.READ],
  [proc(JobService, "WatchJobs"), Role.READ],
  [proc(NodeService, "CordonNode"), Role.OPERATOR],
  [proc(NodeService, "DrainNode"), Role.OPERATOR],
  [proc(NodeService, "UncordonNode"), Role.OPERATOR],
  [proc(NodeService, "RemoveNode"), Role.OPERATOR],
  [proc(NodeService, "ListNodes"), Role.READ],
  [proc(TokenService, "JoinWorker"), "join-token"],
  // Over TLS also with its current certificate (checkCertificate).
  [proc(TokenService, "RenewWorkerCertificate"), "worker-credential"],
  // Load balancers and grpcurl/buf curl discover the server before they hold a token.
  [proc(Health, "Check"), "anyone"],
  [proc(Health, "Watch"), "anyone"],
  [proc(ReflectionV1, "ServerReflectionInfo"), "anyone"],
  [proc(ReflectionV1alpha, "ServerReflectionInfo"), "anyone"],
]);

/** The bearer secret of an Authorization header, or undefined when there is none. */
function bearer(header: string | null): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw new ConnectError('authorization: expected "Bearer <token>"', Code.Unauthenticated);
  return m[1];
}

/**
 * The decision for one call: the token it acts as (undefined for a method anyone may call),
 * or UNAUTHENTICATED (no, a malformed, unknown, revoked or expired token) or
 * PERMISSION_DENIED (a live token whose role does not cover the method, or that is not the
 * kind of worker token the method takes).
 */
export function authorize(
  tokens: TokenTable,
  procedure: string,
  authorization: string | null,
  nowMs: number,
): Token | undefined {
  const need = POLICY.get(procedure);
  if (need === "anyone") return undefined;
  const secret = bearer(authorization);
  if (!secret) {
    throw new ConnectError(
      `${procedure} needs a token: send "Authorization: Bearer <token>" (cube: --token, CUBE_TOKEN or the config file)`,
      Code.Unauthenticated,
    );
  }
  const check = tokens.check(secret, nowMs);
  if (!check.ok) throw new ConnectError(check.why, Code.Unauthenticated);
  const token = check.token;
  const isWorkerToken = token.role === Role.WORKER;
  if (need === "worker-credential") {
    if (!isWorkerToken || token.workerId === "") {
      throw new ConnectError(
        `token ${token.id} is not a worker's own credential: a worker joins first (TokenService.JoinWorker, with a join token)`,
        Code.PermissionDenied,
      );
    }
  } else if (need === "join-token") {
    if (!isWorkerToken || token.workerId !== "") {
      throw new ConnectError(
        `${procedure} takes a join token (role worker, bound to no worker); token ${token.id} is not one`,
        Code.PermissionDenied,
      );
    }
  } else if (need === undefined || !roleIncludes(token.role, need)) {
    throw new ConnectError(
      `token ${token.id} (${Role[token.role]?.toLowerCase()}) may not call ${procedure}`,
      Code.PermissionDenied,
    );
  }
  return token;
}

/**
 * The client certificate's part of the decision, on a TLS server. A certificate that does not
 * chain to the cluster's CA (forged, expired) is UNAUTHENTICATED whatever the call: whoever
 * sends one is not who they claim. The worker stream and certificate renewal need the
 * worker's certificate, naming the worker its credential is bound to: none is
 * UNAUTHENTICATED, another worker's is PERMISSION_DENIED. Every other call needs none (token
 * clients have none). `token` is the call's token as {@link authorize} found it.
 */
export function checkCertificate(
  procedure: string,
  token: Token | undefined,
  peer: PeerCertificate | undefined,
): void {
  if (peer && !peer.verified) {
    throw new ConnectError(
      `client certificate refused (${peer.error}): it is not one this cluster's CA issued, or it expired`,
      Code.Unauthenticated,
    );
  }
  if (POLICY.get(procedure) !== "worker-credential") return;
  const named = peer ? workerOf(peer.uris) : undefined;
  if (!named) {
    throw new ConnectError(
      `${procedure} over TLS needs the worker's client certificate (cube://worker/<id>, from JoinWorker); without one, join again`,
      Code.Unauthenticated,
    );
  }
  if (token?.workerId && named !== token.workerId) {
    throw new ConnectError(
      `the client certificate names worker "${named}", but the credential is worker "${token.workerId}"'s`,
      Code.PermissionDenied,
    );
  }
}

/**
 * Calls one token may make: `perSecond` on average, bursts of up to `burst` (a token bucket
 * per token id). One runaway script or leaked token cannot starve everyone else; a worker's
 * stream is one call, whatever flows on it.
 */
export interface RateLimit {
  readonly perSecond: number;
  readonly burst: number;
}

/** Far above what people and cube's own clients do, one RunTask per task included (a RunTasks of 5,000 tasks is one call). */
export const DEFAULT_RATE: RateLimit = { perSecond: 10_000, burst: 20_000 };

/** A token bucket per key, refilled by the clock. */
export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    readonly limit: RateLimit,
    readonly clock: Clock,
  ) {}

  /** Takes one call from `key`'s bucket; false when it is empty. */
  take(key: string): boolean {
    const now = this.clock.now();
    const b = this.#buckets.get(key) ?? { tokens: this.limit.burst, at: now };
    b.tokens = Math.min(this.limit.burst, b.tokens + ((now - b.at) / 1000) * this.limit.perSecond);
    b.at = now;
    this.#buckets.set(key, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

/** The token a call was authorized as, for handlers that need it (undefined: anyone). */
export const CALLER = new WeakMap<AbortSignal, Token>();

/**
 * Streams one token may hold open at once (watches, logs, the worker stream): far above what
 * a dashboard or a script holds, low enough that one leaked token cannot make every commit
 * walk tens of thousands of watchers.
 */
export const DEFAULT_OPEN_STREAMS = 100;
/**
 * Streams the callers without a token from one address may hold open at once (health
 * watches, reflection): each address has its own count, so that one client holding its
 * streams locks no other out (a load balancer watches health on one or two).
 */
export const ANYONE_OPEN_STREAMS = 100;

/**
 * Open streams per key ("token <id>", or "anyone <address>"), each taken once and given back
 * once, with the handle that ends each: a token's streams end when it is revoked or expires.
 */
class OpenStreams {
  readonly #open = new Map<string, Set<AbortController>>();

  /** Takes a stream for `key`: the handle that ends it, or undefined when it holds `limit` already. */
  take(key: string, limit: number): AbortController | undefined {
    let open = this.#open.get(key);
    if ((open?.size ?? 0) >= limit) return undefined;
    if (!open) {
      open = new Set();
      this.#open.set(key, open);
    }
    const handle = new AbortController();
    open.add(handle);
    return handle;
  }

  /** A function that gives the stream back, the first time it is called only. */
  releaser(key: string, handle: AbortController): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const open = this.#open.get(key);
      open?.delete(handle);
      if (open?.size === 0) this.#open.delete(key);
    };
  }

  /** Ends every stream `key` holds open, with `reason` as their status; how many. */
  end(key: string, reason: ConnectError): number {
    const open = [...(this.#open.get(key) ?? [])];
    for (const handle of open) handle.abort(reason);
    return open.length;
  }
}

/**
 * Runs `fn` once `clock` reaches `atMs` (in steps of at most {@link MAX_TIMER_MS}: a token may
 * live ten years); returns what cancels it.
 */
function at(clock: Clock, atMs: number, fn: () => void): () => void {
  let timer: TimerHandle | undefined;
  const arm = () => {
    const left = atMs - clock.now();
    if (left <= 0) {
      timer = undefined;
      fn();
      return;
    }
    timer = clock.setTimeout(arm, Math.min(left, MAX_TIMER_MS));
  };
  arm();
  return () => {
    if (timer) clock.clearTimeout(timer);
    timer = undefined;
  };
}

/** Options of {@link authorization}. */
export interface AuthOptions {
  /** Calls per token; default {@link DEFAULT_RATE}. */
  readonly rate?: RateLimit;
  /** Streams a token may hold open at once; default {@link DEFAULT_OPEN_STREAMS}. */
  readonly openStreams?: number;
  /** Streams callers without a token from one address may hold; default {@link ANYONE_OPEN_STREAMS}. */
  readonly anyoneOpenStreams?: number;
  /** Whether the server speaks TLS (client certificates are then checked). */
  readonly tls?: boolean;
}

/** A stream let in: what ends it (its token revoked or expired) and what gives its place back. */
interface OpenStream {
  readonly end: AbortSignal;
  readonly release: () => void;
}

/** What the gate decided for a call it let in. */
interface Decision {
  /** The token it acts as; undefined for a method anyone may call. */
  readonly token: Token | undefined;
  /** A stream's place among its caller's open streams. */
  readonly stream: OpenStream | undefined;
}

const DECISION = createContextKey<Decision | undefined>(undefined, {
  description: "the authorization decision of the call",
});

/** The manager's authorization: the decision and what carries it out. */
export interface Authorization {
  /**
   * Decides every call from its headers, before its body is read (a gate of startServer):
   * refusals are answered at once, and logged by the server without the secret.
   */
  readonly gate: Gate;
  /**
   * Carries out the gate's decision once the call runs, deciding nothing itself: a worker
   * stream speaks only for its credential's worker, a stream ends when its token is revoked
   * or expires, and gives its place back when it ends. A call the gate did not decide is
   * refused.
   */
  readonly interceptor: Interceptor;
}

/**
 * The manager's authorization: {@link authorize} (and {@link checkCertificate} over TLS) for
 * every call from its headers, then the token's call rate and open streams.
 */
export function authorization(
  tokens: TokenTable,
  clock: Clock,
  logger: Logger,
  options: AuthOptions = {},
): Authorization {
  const rate = options.rate ?? DEFAULT_RATE;
  const openStreams = options.openStreams ?? DEFAULT_OPEN_STREAMS;
  const anyoneOpenStreams = options.anyoneOpenStreams ?? ANYONE_OPEN_STREAMS;
  const tls = options.tls ?? false;
  const limiter = new RateLimiter(rate, clock);
  const streams = new OpenStreams();
  // Revocation takes effect at once: a call is refused from now on (authorize), and every
  // stream the token opened ends.
  tokens.onRevoke((id) => {
    const ended = streams.end(
      `token ${id}`,
      new ConnectError(`token ${id} revoked`, Code.Unauthenticated),
    );
    if (ended > 0) {
      logger.info({ token: id, streams: ended }, "ended the streams of a revoked token");
    }
  });

  /** Takes the stream's place among its caller's, given back when the call ends. */
  const openStream = (call: HandlerContext, token: Token | undefined): OpenStream => {
    const from = call.values.get(REMOTE_ADDRESS) ?? "";
    const key = token ? `token ${token.id}` : `anyone ${from}`;
    const limit = token ? openStreams : anyoneOpenStreams;
    const ender = streams.take(key, limit);
    if (!ender) {
      throw new ConnectError(
        `${token ? `token ${token.id} already holds` : `callers without a token from ${from || "here"} already hold`} ${limit} open streams, the most allowed: close some (watches, logs) and retry`,
        Code.ResourceExhausted,
      );
    }
    const givenBack = streams.releaser(key, ender);
    let release = givenBack;
    if (token?.expiresAt) {
      const cancel = at(clock, timestampMs(token.expiresAt), () =>
        ender.abort(new ConnectError(`token ${token.id} expired`, Code.Unauthenticated)),
      );
      release = () => {
        cancel();
        givenBack();
      };
    }
    if (call.signal.aborted) release();
    else call.signal.addEventListener("abort", release, { once: true });
    return { end: ender.signal, release };
  };

  const gate: Gate = (call) => {
    const procedure = proc(call.service, call.method.name);
    const peer = tls ? call.values.get(PEER_CERTIFICATE) : undefined;
    // A forged certificate is refused before its token is even looked at.
    if (peer && !peer.verified) checkCertificate(procedure, undefined, peer);
    const repeated = repeatedAuthorization(call.values.get(AUTHORIZATION_HEADERS));
    if (repeated) throw new ConnectError(repeated, Code.Unauthenticated);
    const token = authorize(
      tokens,
      procedure,
      call.requestHeader.get("authorization"),
      clock.now(),
    );
    if (tls) checkCertificate(procedure, token, peer);
    if (token && !limiter.take(token.id)) {
      throw new ConnectError(
        `token ${token.id} is over its rate of ${rate.perSecond} calls/s: slow down and retry`,
        Code.ResourceExhausted,
      );
    }
    const stream = call.method.methodKind === "unary" ? undefined : openStream(call, token);
    if (token) CALLER.set(call.signal, token);
    call.values.set(DECISION, { token, stream });
  };

  const interceptor: Interceptor = (next) => async (req) => {
    const decision = req.contextValues.get(DECISION);
    if (!decision) {
      throw new ConnectError(
        `${proc(req.service, req.method.name)}: no authorization decision (the server has no authorization gate)`,
        Code.Internal,
      );
    }
    const { token, stream } = decision;
    let request = req;
    if (token && req.stream && proc(req.service, req.method.name) === WORKER_STREAM) {
      request = { ...req, message: onlyAs(token.workerId, req.message, logger) };
    }
    if (!stream) return next(request);
    if (token) {
      // The handler sees the stream end (its signal) when the token is revoked or expires;
      // the caller hears why (givingBack).
      const signal = AbortSignal.any([req.signal, stream.end]);
      CALLER.set(signal, token);
      request = { ...request, signal };
    }
    try {
      const response = await next(request);
      if (!response.stream) {
        stream.release();
        return response;
      }
      return { ...response, message: givingBack(response.message, stream.release, stream.end) };
    } catch (error) {
      stream.release();
      throw error;
    }
  };

  return { gate, interceptor };
}

/**
 * `messages`, calling `done` once they end, fail or are abandoned; cut short with `end`'s
 * reason as the stream's status once `end` aborts (its token revoked or expired), whether or
 * not the handler has stopped yet.
 */
async function* givingBack<M>(
  messages: AsyncIterable<M>,
  done: () => void,
  end: AbortSignal,
): AsyncGenerator<M> {
  const it = messages[Symbol.asyncIterator]();
  try {
    for (;;) {
      const r = await nextUnless(it, end);
      if (r.done) break;
      yield r.value;
    }
    // The handler stopped because its signal did: the caller hears why.
    if (end.aborted) throw end.reason;
  } finally {
    done();
    // Cut short or abandoned: the handler's generator is closed too (once it is not running).
    Promise.resolve(it.return?.()).catch(() => undefined);
  }
}

/**
 * The iterator's next result, or `end`'s reason as soon as it aborts. A listener per call,
 * removed once it settles: a race against one promise for the whole stream would keep a
 * reaction per message until the stream ends.
 */
function nextUnless<M>(it: AsyncIterator<M>, end: AbortSignal): Promise<IteratorResult<M>> {
  if (end.aborted) return Promise.reject(end.reason);
  return new Promise((resolve, reject) => {
    const onEnd = () => reject(end.reason);
    end.addEventListener("abort", onEnd, { once: true });
    it.next().then(
      (r) => {
        end.removeEventListener("abort", onEnd);
        resolve(r);
      },
      (error: unknown) => {
        end.removeEventListener("abort", onEnd);
        reject(error);
      },
    );
  });
}

const WORKER_STREAM = proc(WorkerService, "Connect");

/**
 * The worker stream's messages, refused (PERMISSION_DENIED, logged) the moment one
 * registers as a worker other than the one the credential names: a stream speaks only for
 * its own worker, so no one can take over another worker's id and tasks.
 */
async function* onlyAs<M extends Message>(
  workerId: string,
  messages: AsyncIterable<M>,
  logger: Logger,
): AsyncGenerator<M> {
  for await (const m of messages) {
    const message = (m as { message?: { case?: string; value?: { workerId?: string } } }).message;
    if (message?.case === "register" && message.value?.workerId !== workerId) {
      // The claimed id is not checked yet (validate-register.ts comes later): bounded here.
      const claimed = quote(message.value?.workerId ?? "");
      logger.warn(
        { credential: workerId, claimed },
        "refused a worker stream registering as another worker",
      );
      throw new ConnectError(
        `this credential is worker "${workerId}"'s: it may not register as ${claimed}`,
        Code.PermissionDenied,
      );
    }
    yield m;
  }
}
