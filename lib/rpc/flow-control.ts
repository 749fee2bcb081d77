import type * as http2 from "node:http2";
import { Http2SessionManager } from "@connectrpc/connect-node";

/**
 * HTTP/2 flow-control windows for cube's servers and clients. With the 64 KiB defaults a
 * 1 MiB RunTasks request crawls in 16 round trips, each waiting for a busy event loop to
 * send WINDOW_UPDATE; memory is not the constraint here.
 */
/**
 * Per-stream window (SETTINGS_INITIAL_WINDOW_SIZE) of servers, and of benchmark clients.
 * Not of the CLI: a small window is what lets a server notice a watcher that stopped reading.
 */
export const STREAM_WINDOW = 4 << 20;
/** Per-connection window a server opens on each session. */
export const SESSION_WINDOW = 16 << 20;

/**
 * A connect-node session manager whose connections open their receive window to
 * {@link SESSION_WINDOW} as soon as they carry a request. Node offers no option for the
 * connection-level window of a client (only for a stream's): at its 64 KiB default, a
 * 250 KiB answer crosses in four round trips, each waiting for the server's event loop to
 * read a WINDOW_UPDATE between its other work — ~800 ms per RunTasks answer of 5,000 tasks
 * from a busy manager, against ~10 ms with the window open. (gRPC's Go and Java clients
 * grow their windows to megabytes on their own.)
 */
export class WideWindowSessionManager extends Http2SessionManager {
  readonly #widened = new WeakSet<http2.Http2Session>();

  override async request(
    ...args: Parameters<Http2SessionManager["request"]>
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session;
    if (session && !this.#widened.has(session) && !session.destroyed) {
      this.#widened.add(session);
      session.setLocalWindowSize(SESSION_WINDOW);
    }
    return stream;
  }
}
