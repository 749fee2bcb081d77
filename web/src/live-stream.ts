/**
 * Following a server stream for as long as the page wants it: reconnecting with back-off
 * after a drop (the manager restarted, the network blinked), and saying how the link is, so
 * the page can show it. Where to resume from is the caller's: `open` reads its own position
 * (a revision) each time, so a reconnect misses nothing and repeats nothing.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { sleep } from "../../lib/sleep.js";

/** How a followed stream is doing, for the header's indicator. */
export type LinkState =
  | { readonly kind: "connecting" }
  | { readonly kind: "live" }
  | { readonly kind: "retrying"; readonly error: string; readonly inMs: number }
  | { readonly kind: "stopped"; readonly error?: string };

/** What to do after a stream failed. */
export type OnError = "retry" | "stop";

/** What {@link follow} needs. */
export interface FollowOptions<M> {
  /**
   * Opens the stream from where the caller is now. `ready` says the link works before a
   * message came (a list answered): a watch of a quiet cluster may send nothing for long.
   */
  open(signal: AbortSignal, ready: () => void): AsyncIterable<M>;
  /** Each message, in order. */
  onMessage(message: M): void;
  /** The link changed. */
  onState?(state: LinkState): void;
  /**
   * Decides about a failure. Default: stop on UNAUTHENTICATED and PERMISSION_DENIED (retrying
   * does not help), retry anything else. A caller that must reload first (OUT_OF_RANGE) does
   * so here and answers "retry".
   */
  onError?(error: ConnectError): OnError;
}

/** A stream being followed. */
export interface Following {
  /** Stops for good: the stream is aborted and no reconnect follows. */
  stop(): void;
}

/** First wait after a failure; doubled on each failure in a row, up to {@link MAX_BACKOFF_MS}. */
const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 8000;

/** Whether a failure is one that retrying cannot mend. */
export function isFatal(error: ConnectError): boolean {
  return error.code === Code.Unauthenticated || error.code === Code.PermissionDenied;
}

/**
 * A stream that has neither failed nor sent anything this long after it opened counts as
 * live: a server stream's headers come with its first message, and a refused or unreachable
 * manager answers within milliseconds.
 */
const QUIET_OK_MS = 1500;

/** Follows the stream `options.open` opens until `stop()` (or a failure it must not retry). */
export function follow<M>(options: FollowOptions<M>): Following {
  const abort = new AbortController();
  const state = (s: LinkState) => options.onState?.(s);
  void (async () => {
    let backoff = FIRST_BACKOFF_MS;
    while (!abort.signal.aborted) {
      state({ kind: "connecting" });
      let error: ConnectError;
      let live = false;
      const ready = () => {
        if (live || abort.signal.aborted) return;
        live = true;
        backoff = FIRST_BACKOFF_MS;
        state({ kind: "live" });
      };
      const quiet = setTimeout(ready, QUIET_OK_MS);
      try {
        for await (const message of options.open(abort.signal, ready)) {
          ready();
          options.onMessage(message);
        }
        // A server stream that ends on its own is a manager going away (it never ends one
        // otherwise): the same as a drop.
        error = new ConnectError("the stream ended", Code.Unavailable);
      } catch (e) {
        if (abort.signal.aborted) break;
        error = ConnectError.from(e);
      } finally {
        clearTimeout(quiet);
        live = true; // no late "live" from this attempt
      }
      const decision = options.onError ? options.onError(error) : isFatal(error) ? "stop" : "retry";
      if (decision === "stop") {
        state({ kind: "stopped", error: error.rawMessage });
        return;
      }
      // A little jitter, so that every open page does not come back at the same instant.
      const wait = Math.round(backoff * (0.75 + Math.random() * 0.5));
      state({ kind: "retrying", error: error.rawMessage, inMs: wait });
      await sleep(wait, abort.signal);
      backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
    }
    state({ kind: "stopped" });
  })();
  return { stop: () => abort.abort() };
}
