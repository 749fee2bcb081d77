import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";

/** A handler of plain HTTP requests, over HTTP/1.1 or HTTP/2 (connect-node's NodeHandlerFn). */
export type PlainHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;

/**
 * A {@link ServerOptions.fallback} that answers the given paths (matched exactly, the query
 * ignored) and 404 for anything else, as a server without a fallback does. More paths (the
 * dashboard's files) are more entries.
 */
export function plainHttp(paths: Readonly<Record<string, PlainHandler>>): PlainHandler {
  const byPath = new Map(Object.entries(paths));
  return (req, res) => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const handler = byPath.get(q === -1 ? url : url.slice(0, q));
    if (handler) {
      handler(req, res);
      return;
    }
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
    res.end("not found\n");
  };
}
