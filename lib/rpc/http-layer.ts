/**
 * The HTTP layer of every cube server, under connect's protocol handlers. It does what
 * connect-node's connectNodeAdapter does — a request for an RPC goes to that RPC's handler,
 * anything else to the fallback — and what that adapter does not:
 *
 * - HTTP/2 request headers over the limit are answered 431 before anything reads them (Node
 *   only announces SETTINGS_MAX_HEADER_LIST_SIZE; HTTP/1.1's limit is Node's own);
 * - the body of a call whose request is one message (unary, server-streaming) must be in
 *   within a deadline of its headers, or the call ends with DEADLINE_EXCEEDED and the rest is
 *   not read: a client trickling a body cannot hold a request's worth of memory for minutes;
 * - each call carries its {@link Exchange}, so that a call answered before its body is in (a
 *   refusal by a {@link Gate}) does not wait for the rest of that body.
 */
import type * as http from "node:http";
import * as http2 from "node:http2";
import type { Socket } from "node:net";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ContextValues,
  createContextKey,
  type HandlerContext,
} from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import {
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import type { PlainHandler } from "./plain-http.js";

/**
 * Decides about a call from its headers, before a byte of its body is read (connect's
 * requestGate): throwing a ConnectError refuses the call with it, answered at once. A gate
 * may put what it decided in the call's context values, for interceptors and handlers.
 */
export type Gate = (call: HandlerContext) => void | Promise<void>;

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = Parameters<typeof universalResponseToNodeResponse>[1];

/** How long a connection closed with a body still coming stays half-open: see {@link Exchange.leaveBody}. */
const LINGER_MS = 500;

/** The HTTP request and response of one call. */
export class Exchange {
  constructor(
    readonly req: NodeRequest,
    readonly res: NodeResponse,
  ) {}

  /**
   * The call is answered before its whole body came in (refused, or too slow): the rest is
   * not waited for. Over HTTP/2, connect-node resets the stream (NO_ERROR) once the answer is
   * out, and the connection's other streams go on. Over HTTP/1.1 the connection closes after
   * the answer — else connect-node would read up to 256 KiB more of the body first, as long as
   * the client takes to send it; half-closed first, and fully after {@link LINGER_MS}, so that
   * the client's TCP stack does not drop the answer when it sees the reset (as connect-node
   * does when it gives up on a body itself).
   */
  leaveBody(): void {
    if (this.req.complete || "stream" in this.res) return;
    const res = this.res as http.ServerResponse;
    res.shouldKeepAlive = false;
    const socket: Socket | null = res.socket;
    if (socket) {
      socket.destroySoon = () => {
        socket.end(() => setTimeout(() => socket.destroy(), LINGER_MS).unref());
      };
    }
  }
}

/** The {@link Exchange} of the call, set by {@link nodeHandler} (absent in router transports). */
export const EXCHANGE = createContextKey<Exchange | undefined>(undefined, {
  description: "the HTTP request and response of the call",
});

/** What {@link nodeHandler} needs. */
export interface NodeHandlerOptions {
  /** Routers whose handlers serve the RPCs (a path served by two: the later one). */
  readonly routers: readonly ConnectRouter[];
  /** Answers requests for no RPC; unset: 404. */
  readonly fallback?: PlainHandler;
  /** Context values of a call, from its request. */
  readonly contextValues: (req: NodeRequest) => ContextValues;
  /** Largest HTTP/2 header list, counted as RFC 9113 §6.5.2 does (name + value + 32 a field). */
  readonly maxHeaderBytes: number;
  /** How long after its headers a one-message call's body may take to come in whole. */
  readonly bodyTimeoutMs: number;
}

/** A Node request handler (HTTP/1.1 and HTTP/2 alike) for the routers' RPCs. */
export function nodeHandler(o: NodeHandlerOptions): (req: NodeRequest, res: NodeResponse) => void {
  const paths = new Map<string, UniversalHandler>();
  for (const router of o.routers) for (const h of router.handlers) paths.set(h.requestPath, h);
  const fallback = o.fallback ?? notFound;
  return (req, res) => {
    if ("stream" in req && headerListBytes(req.rawHeaders) > o.maxHeaderBytes) {
      headersTooLarge(req, res as http2.Http2ServerResponse, o.maxHeaderBytes);
      return;
    }
    const handler = paths.get(req.url?.split("?", 2)[0] ?? "");
    if (!handler) {
      fallback(req, res as Parameters<PlainHandler>[1]);
      return;
    }
    const exchange = new Exchange(req, res);
    let call: UniversalServerRequest;
    try {
      call = universalRequestFromNodeRequest(
        req,
        res,
        undefined,
        o.contextValues(req).set(EXCHANGE, exchange),
      );
    } catch (error) {
      // An HTTP/1.0 request without Host has no authority to make its URL from: connect-node
      // throws, and a throw from a request listener would end the process.
      exchange.leaveBody();
      res.writeHead(400, { "content-type": "text/plain; charset=utf-8" });
      res.end(`${ConnectError.from(error).rawMessage}\n`);
      return;
    }
    const kind = handler.method.methodKind;
    if ((kind === "unary" || kind === "server_streaming") && isStream(call.body)) {
      call.body = within(call.body, o.bodyTimeoutMs, exchange);
    }
    handler(call)
      .then((answer) => universalResponseToNodeResponse(answer, res))
      .catch((reason: unknown) => {
        // What connect-node's adapter does: a call cut by its client is no failure.
        if (ConnectError.from(reason).code === Code.Aborted) return;
        console.error(
          `handler for rpc ${handler.method.name} of ${handler.service.typeName} failed`,
          reason,
        );
      });
  };
}

function isStream(body: unknown): body is AsyncIterable<Uint8Array> {
  return typeof body === "object" && body !== null && Symbol.asyncIterator in body;
}

/** The size of a header list as HTTP/2 counts it: each field's name and value, plus 32. */
export function headerListBytes(raw: readonly string[]): number {
  let bytes = 0;
  for (const field of raw) bytes += field.length;
  return bytes + (raw.length / 2) * 32;
}

/** 431, then the stream reset (NO_ERROR) if the client is still sending: nothing of it is read. */
function headersTooLarge(
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
  limit: number,
): void {
  res.once("finish", () => {
    if (!req.complete) res.stream.close(http2.constants.NGHTTP2_NO_ERROR);
  });
  res.writeHead(431, { "content-type": "text/plain; charset=utf-8" });
  res.end(`request headers larger than ${limit} bytes\n`);
}

const notFound: PlainHandler = (_req, res) => {
  res.writeHead(404);
  res.end();
};

/**
 * `body`, failing with DEADLINE_EXCEEDED once `ms` have passed since now (the headers came
 * in) and it has not ended; the rest is then left unread ({@link Exchange.leaveBody}). The
 * clock only runs once the body is read, that is once the gates let the call in.
 */
function within(
  body: AsyncIterable<Uint8Array>,
  ms: number,
  exchange: Exchange,
): AsyncIterable<Uint8Array> {
  const headersAt = performance.now();
  return {
    [Symbol.asyncIterator]() {
      const it = body[Symbol.asyncIterator]();
      let timer: NodeJS.Timeout | undefined;
      let late: Promise<never> | undefined;
      const stop = () => clearTimeout(timer);
      const deadline = () => {
        if (late) return late;
        late = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => {
              exchange.leaveBody();
              reject(
                new ConnectError(
                  `the request body did not come in within ${ms / 1000} s of its headers`,
                  Code.DeadlineExceeded,
                ),
              );
            },
            Math.max(0, headersAt + ms - performance.now()),
          );
        });
        // Read or not, it must not be an unhandled rejection.
        late.catch(() => undefined);
        // The call is over (answered, or cut by its client) whatever the body does now.
        exchange.res.once("close", stop);
        return late;
      };
      return {
        async next() {
          try {
            const r = await Promise.race([it.next(), deadline()]);
            if (r.done) stop();
            return r;
          } catch (error) {
            stop();
            throw error;
          }
        },
        async return(value?: unknown) {
          stop();
          return (await it.return?.(value)) ?? { done: true, value: undefined };
        },
      };
    },
  };
}
