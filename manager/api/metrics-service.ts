import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { TaskMetrics } from "../../gen/cube/v1/metrics_pb.js";
import { MetricsService } from "../../gen/cube/v1/metrics_pb.js";
import { quote } from "../../lib/quote.js";
import type { ControlPlane } from "../core/control-plane.js";

/**
 * The manager's MetricsService: the latest samples the workers streamed up (kept in memory
 * only; a sample is stale within seconds anyway).
 */
export function metricsServiceRoutes(cp: ControlPlane): (router: ConnectRouter) => void {
  return (router) =>
    router.service(MetricsService, {
      getNodeMetrics(req) {
        if (req.workerId === "") {
          throw new ConnectError("worker_id: required", Code.InvalidArgument);
        }
        const worker = cp.workers.find(req.workerId);
        if (!worker) {
          throw new ConnectError(`worker ${quote(req.workerId)} not found`, Code.NotFound);
        }
        if (!worker.metrics) {
          throw new ConnectError(
            `worker ${quote(req.workerId)} has not sent a metrics sample yet`,
            Code.NotFound,
          );
        }
        return { metrics: worker.metrics };
      },
      listNodeMetrics() {
        return {
          metrics: [...cp.workers.all()].flatMap((w) => (w.metrics ? [w.metrics] : [])),
        };
      },
      listTaskMetrics(req) {
        const metrics: TaskMetrics[] = [];
        for (const w of cp.workers.all()) {
          if (req.workerId && w.id !== req.workerId) continue;
          if (req.taskId) {
            const m = w.taskMetrics.get(req.taskId);
            if (m) metrics.push(m);
          } else {
            metrics.push(...w.taskMetrics.values());
          }
        }
        return { metrics };
      },
      async *watchMetrics(req, ctx) {
        const sub = cp.metricsFeed.subscribe();
        try {
          while (!ctx.signal.aborted) {
            for (const id of await sub.changed(ctx.signal)) {
              if (req.workerId && id !== req.workerId) continue;
              const w = cp.workers.get(id);
              if (w?.metrics) yield { node: w.metrics, tasks: [...w.taskMetrics.values()] };
            }
          }
        } finally {
          sub.close();
        }
      },
    });
}
