import { type MetricsServing, serveMetrics } from "../../lib/metrics/endpoint.js";
import type { ControlPlane } from "../core/control-plane.js";

/**
 * The manager's GET /metrics (HTTP/1.1 and h2c, on the API port) and its RPC metrics: the
 * control plane's registry (tasks by state, workers by status, placements, scheduling, store
 * commits; manager/core/manager-metrics.ts), cube_rpc_* by service, method and code, and the
 * process metrics (CPU, memory, event-loop lag, GC). Readable without a token, as Prometheus
 * expects by default; see lib/metrics/endpoint.ts for why nothing there needs one.
 */
export function managerMetrics(cp: ControlPlane): MetricsServing {
  return serveMetrics(cp.metrics.registry);
}
