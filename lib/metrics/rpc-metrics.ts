import { Code, ConnectError } from "@connectrpc/connect";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Gate } from "../rpc/http-layer.js";

/** Label names of the per-call metrics; gRPC's own names for service and method. */
type CallLabel = "service" | "method" | "code";

/**
 * From 1 ms to 10 min: unary calls take milliseconds, and streams (WatchTasks, a worker's
 * stream, TaskLogs) last as long as their client stays, which only the top buckets and
 * +Inf hold.
 */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600];

/**
 * How a call ended, as grpc-go names codes ("OK", "NotFound", "Canceled"…). The handler
 * context's signal is aborted when the call ends: with nothing when it succeeded, with the
 * error when it failed (the handler's own, a deadline, or the client's reset), so streams are
 * measured without wrapping every message they carry.
 */
function codeOf(reason: unknown): string {
  if (reason instanceof ConnectError) return Code[reason.code] ?? String(reason.code);
  // A bare abort() (DOMException "AbortError") is how a call that succeeded ends.
  if (reason instanceof Error && reason.name === "AbortError") return "OK";
  return Code[Code.Internal];
}

/**
 * A server gate (the first) that counts calls and times them, by service, method and code:
 * `cube_rpc_requests_total`, `cube_rpc_duration_seconds` (a call's whole life: a stream's
 * too) and `cube_rpc_in_flight` (calls under way: open streams among them). It lets every
 * call in: calls the next gates refuse (no token) are counted, as are bodies too large to
 * read; calls refused before any gate (an unknown content type) are not. Registered in
 * `registry`; one per server.
 */
export function rpcMetrics(registry: Registry): Gate {
  const requests = new Counter<CallLabel>({
    name: "cube_rpc_requests_total",
    help: "RPCs handled, by service, method and code (gRPC, gRPC-Web and Connect alike).",
    labelNames: ["service", "method", "code"],
    registers: [registry],
  });
  const duration = new Histogram<CallLabel>({
    name: "cube_rpc_duration_seconds",
    help: "Time from an RPC's start to its end, streams included, by service, method and code.",
    labelNames: ["service", "method", "code"],
    buckets: BUCKETS,
    registers: [registry],
  });
  const inFlight = new Gauge<"service" | "method">({
    name: "cube_rpc_in_flight",
    help: "RPCs under way (open streams among them), by service and method.",
    labelNames: ["service", "method"],
    registers: [registry],
  });
  return (call) => {
    const started = performance.now();
    const service = call.service.typeName;
    const method = call.method.name;
    inFlight.inc({ service, method });
    const done = () => {
      const labels = { service, method, code: codeOf(call.signal.reason) };
      requests.inc(labels);
      duration.observe(labels, (performance.now() - started) / 1000);
      inFlight.dec({ service, method });
    };
    if (call.signal.aborted) done();
    else call.signal.addEventListener("abort", done, { once: true });
  };
}
