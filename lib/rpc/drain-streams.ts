import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * Ends a server's open response streams when it drains, as gRPC's own servers do: every
 * handler's `ctx.signal` is linked to the signal of {@link StreamDrain.signal} (connect's
 * `shutdownSignal`), so watches stop waiting at once, and a server stream that ends while the
 * server drains ends with UNAVAILABLE "the server is shutting down" rather than OK: what it
 * was following goes on without it, and the client should open it again (elsewhere, or
 * once the server is back). Without this, an open watch held a draining server until its
 * hard close, and the client read the cut as a broken connection.
 *
 * Likewise a server stream whose deadline (grpc-timeout, connect-timeout-ms) passed ends
 * with DEADLINE_EXCEEDED, not OK: handlers stop at their aborted signal and return, and a
 * watch that never ends, or a log follow, must not read as finished.
 */
export class StreamDrain {
  readonly #controller = new AbortController();

  constructor(readonly who = "the server") {}

  /** Aborted (with the UNAVAILABLE error) when the drain starts. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Starts the drain: every handler's signal aborts; streams end with UNAVAILABLE. */
  start(): void {
    this.#controller.abort(new ConnectError(`${this.who} is shutting down`, Code.Unavailable));
  }

  /**
   * The interceptor that gives a server stream ended by the drain its UNAVAILABLE end
   * (handlers just stop at an aborted signal; some rethrow the abort's reason, some an error
   * of their own making from the cut): whatever it ended with, once the drain has begun.
   */
  readonly interceptor: Interceptor = (next) => async (req) => {
    const res = await next(req);
    // Server streams only (watches, logs): the worker's bidirectional stream carries every
    // assignment and update, and the manager ends those itself before it drains, so its
    // messages are not passed through one more generator.
    if (!res.stream || req.method.methodKind !== "server_streaming") return res;
    const signal = this.#controller.signal;
    const own = req.signal;
    /** Why the stream ended, when the drain or its deadline ended it. */
    const ended = (): unknown => {
      if (signal.aborted) return signal.reason;
      if (own.aborted && ConnectError.from(own.reason).code === Code.DeadlineExceeded) {
        return own.reason;
      }
      return undefined;
    };
    const message = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* message;
        } catch (error) {
          throw ended() ?? error;
        }
        const why = ended();
        if (why !== undefined) throw why;
      })(),
    };
  };
}
