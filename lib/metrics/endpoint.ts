/**
 * `GET /metrics` in Prometheus's text format, for the plain-HTTP fallback of a cube server
 * (lib/rpc/server.ts): the process's own figures, once per process, then the server's.
 */
import { collectDefaultMetrics, Registry } from "prom-client";
import type { Gate } from "../rpc/http-layer.js";
import { type PlainHandler, plainHttp } from "../rpc/plain-http.js";
import { rpcMetrics } from "./rpc-metrics.js";

let processRegistry: Registry | undefined;

/**
 * prom-client's default metrics (process_cpu_seconds_total, process_resident_memory_bytes,
 * process_open_fds, nodejs_eventloop_lag_seconds and its percentiles, nodejs_gc_duration_seconds,
 * heap sizes…) under their standard names, which dashboards know. One registry per process:
 * `cube dev` (a manager and a worker in one process) and the bench's hollow hosts (hundreds of
 * workers in one) share one event-loop monitor and one GC observer.
 */
export function processMetrics(): Registry {
  if (!processRegistry) {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    // nodejs_active_handles_total and its kin are gauges named like counters, which
    // Prometheus's conventions (and promtool) reject; the same figures are the sums of
    // nodejs_active_handles{type} and its kin, which stay.
    for (const metric of registry.getMetricsAsArray()) {
      const { name, type } = metric as unknown as { name: string; type: string };
      if (type === "gauge" && name.endsWith("_total")) registry.removeSingleMetric(name);
    }
    processRegistry = registry;
  }
  return processRegistry;
}

/**
 * Answers GET (and HEAD) with the text of `registries`, in order (each metric name must be in
 * one of them only). No authentication: what it shows are counts, durations and process
 * figures — no task id, name, image, label or environment, nothing a token guards, so it
 * stays public like Prometheus targets usually are. Should a token ever be wanted here, this
 * handler is the one place that serves the page: the check goes in front of it, in the
 * server's fallback.
 */
export function metricsPage(registries: readonly Registry[]): PlainHandler {
  return (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
      res.end("use GET\n");
      return;
    }
    Promise.all(registries.map((r) => r.metrics())).then(
      (parts) => {
        const body = parts.join("");
        res.writeHead(200, {
          "content-type": Registry.PROMETHEUS_CONTENT_TYPE,
          "content-length": Buffer.byteLength(body),
          "cache-control": "no-store",
        });
        res.end(body);
      },
      (error: Error) => {
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end(`metrics failed: ${error.message}\n`);
      },
    );
  };
}

/** What a cube server needs to serve metrics: its fallback and its RPC gate. */
export interface MetricsServing {
  /** Answers GET /metrics (404 for any other plain path). */
  readonly fallback: PlainHandler;
  /** Counts and times every RPC into the server's registry (lib/metrics/rpc-metrics.ts). */
  readonly gates: Gate[];
}

/**
 * GET /metrics for a server whose own metrics are in `registry`: the process metrics, then
 * the registry (where the RPC metrics of the server are added).
 */
export function serveMetrics(registry: Registry): MetricsServing {
  return {
    fallback: plainHttp({ "/metrics": metricsPage([processMetrics(), registry]) }),
    gates: [rpcMetrics(registry)],
  };
}
