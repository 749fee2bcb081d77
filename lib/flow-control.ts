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
