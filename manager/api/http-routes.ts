import type { PlainHandler } from "../../lib/rpc/plain-http.js";
import { dashboardHandler, isDashboardPath } from "./dashboard-http.js";

/**
 * The manager's plain-HTTP answers (what is no RPC), over HTTP/1.1 and h2c alike: the
 * dashboard at `/` and `/assets/…`, and whatever `other` answers (GET /metrics, when metrics
 * are on); 404 for the rest.
 */
export function managerHttp(other?: PlainHandler, dashboard = dashboardHandler()): PlainHandler {
  return (req, res) => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    if (isDashboardPath(q === -1 ? url : url.slice(0, q))) {
      dashboard(req, res);
    } else if (other) {
      other(req, res);
    } else {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
      res.end("not found\n");
    }
  };
}
