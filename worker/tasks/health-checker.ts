/**
 * HTTP health checks of running tasks, made by the worker next to the container on its
 * published host port. Only status changes are reported (HEALTHY on the first 200,
 * UNHEALTHY after `failure_threshold` failures in a row), so a steady task sends nothing.
 * Failures within `start_period` of the container's start count for nothing until a check
 * has passed once, as Docker's start period: a slow service is not restarted while it boots.
 */
import { request } from "node:http";
import { durationMs } from "@bufbuild/protobuf/wkt";
import {
  type HealthCheck,
  HealthStatus,
  type PortBinding,
  Protocol,
  type TaskSpec,
} from "../../gen/cube/v1/task_pb.js";

/** What a change of health looks like to the worker. */
export interface HealthReport {
  readonly status: HealthStatus;
  /** What the last check saw: "HTTP 200", "HTTP 500", "timeout after 1s", "connection refused". */
  readonly message: string;
  readonly consecutiveFailures: number;
}

/** A health check with the proto's defaults applied. */
export interface ResolvedHealthCheck {
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly failureThreshold: number;
  /** Failures this soon after the container started count for nothing (until one check passes). */
  readonly startPeriodMs: number;
}

/** Applies the defaults of task.proto: interval 1 s, timeout 1 s, threshold 3, path "/", no start period. */
export function resolveHealthCheck(check: HealthCheck): ResolvedHealthCheck {
  const interval = check.interval ? durationMs(check.interval) : 0;
  const timeout = check.timeout ? durationMs(check.timeout) : 0;
  const path = check.path || "/";
  return {
    path: path.startsWith("/") ? path : `/${path}`,
    intervalMs: interval > 0 ? interval : 1000,
    timeoutMs: timeout > 0 ? timeout : 1000,
    failureThreshold: check.failureThreshold || 3,
    startPeriodMs: check.startPeriod ? Math.max(0, durationMs(check.startPeriod)) : 0,
  };
}

/** Where a task's health check goes: the address and port its checked port is published on. */
export interface HealthTarget {
  readonly host: string;
  readonly port: number;
}

/**
 * The published address to check for a task: that of `health_check.port`, or of the spec's
 * first port when that is 0. Undefined when nothing suitable is published.
 */
export function healthCheckTarget(
  spec: TaskSpec,
  bindings: readonly PortBinding[],
): HealthTarget | undefined {
  const containerPort = spec.healthCheck?.port || spec.ports[0]?.containerPort;
  if (!containerPort) return undefined;
  const binding = bindings.find(
    (b) => b.containerPort === containerPort && b.protocol !== Protocol.UDP && b.hostPort > 0,
  );
  return binding ? { host: probeHost(binding.hostIp), port: binding.hostPort } : undefined;
}

/** A wildcard bind answers on loopback; one on a given address (host_ip) only there. */
function probeHost(hostIp: string): string {
  if (hostIp === "" || hostIp === "0.0.0.0") return "127.0.0.1";
  if (hostIp === "::") return "::1";
  return hostIp;
}

/**
 * "1s", "1.5s", "1234ms": the probe timeout exactly as configured (lib/format-ms rounds to a
 * tenth of a second, which would misquote a setting of 1234ms).
 */
function formatSetting(ms: number): string {
  return ms >= 1000 && ms % 100 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

const ERROR_WORDS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  EHOSTUNREACH: "host unreachable",
  EPIPE: "connection closed",
};

/** One GET; resolves with null on HTTP 200, else with what went wrong. Never rejects. */
export function probe(target: HealthTarget, path: string, timeoutMs: number, signal: AbortSignal) {
  const timeout = AbortSignal.timeout(timeoutMs);
  return new Promise<string | null>((resolve) => {
    const req = request(
      {
        host: target.host,
        port: target.port,
        path,
        method: "GET",
        // A fresh connection each time: nothing pooled outlives the check.
        agent: false,
        headers: { connection: "close", "user-agent": "cube-health-check" },
        signal: AbortSignal.any([timeout, signal]),
      },
      (res) => {
        res.resume();
        res.on("error", () => undefined);
        resolve(res.statusCode === 200 ? null : `HTTP ${res.statusCode}`);
      },
    );
    req.on("error", (error: NodeJS.ErrnoException) => {
      if (timeout.aborted) return resolve(`timeout after ${formatSetting(timeoutMs)}`);
      if (signal.aborted) return resolve("check cancelled");
      resolve((error.code && ERROR_WORDS[error.code]) ?? error.message);
    });
    req.end();
  });
}

interface Watch {
  readonly generation: bigint;
  readonly abort: AbortController;
  timer?: NodeJS.Timeout;
}

/** Runs the health checks of a worker's tasks, one loop per watched task. */
export class HealthChecker {
  readonly #watches = new Map<string, Watch>();
  /** Told the outcome of every probe that was not cancelled (the worker's metrics). */
  readonly #onProbe: ((healthy: boolean) => void) | undefined;

  constructor(onProbe?: (healthy: boolean) => void) {
    this.#onProbe = onProbe;
  }

  /**
   * Checks `taskId` on `target` from now on, replacing any earlier watch of it. `onChange`
   * is called only when the status changes, first on the first result that decides one.
   * `startedAtMs` is when the container started (its start period counts from then; now
   * when not given).
   */
  watch(
    taskId: string,
    generation: bigint,
    check: HealthCheck,
    target: HealthTarget,
    onChange: (report: HealthReport) => void,
    startedAtMs = Date.now(),
  ): void {
    this.unwatch(taskId);
    const config = resolveHealthCheck(check);
    const watch: Watch = { generation, abort: new AbortController() };
    this.#watches.set(taskId, watch);
    let status = HealthStatus.UNSPECIFIED;
    let failures = 0;
    let starting = config.startPeriodMs > 0;
    const round = async () => {
      const startedAt = Date.now();
      const failure = await probe(target, config.path, config.timeoutMs, watch.abort.signal);
      if (watch.abort.signal.aborted) return;
      this.#onProbe?.(failure === null);
      let next = status;
      if (failure === null) {
        failures = 0;
        starting = false;
        next = HealthStatus.HEALTHY;
      } else if (starting && Date.now() - startedAtMs < config.startPeriodMs) {
        // Still booting: this failure counts for nothing.
      } else {
        starting = false;
        failures += 1;
        if (failures >= config.failureThreshold) next = HealthStatus.UNHEALTHY;
      }
      if (next !== status) {
        status = next;
        onChange({ status, message: failure ?? "HTTP 200", consecutiveFailures: failures });
      }
      // Interval from start to start, so a slow answer does not stretch the period.
      const delay = Math.max(0, config.intervalMs - (Date.now() - startedAt));
      watch.timer = setTimeout(round, delay);
      watch.timer.unref();
    };
    void round();
  }

  /** The generation being watched for `taskId`, if any. */
  watching(taskId: string): bigint | undefined {
    return this.#watches.get(taskId)?.generation;
  }

  /** Stops checking `taskId`; a check in flight is cancelled and reports nothing. */
  unwatch(taskId: string): void {
    const watch = this.#watches.get(taskId);
    if (!watch) return;
    this.#watches.delete(taskId);
    watch.abort.abort();
    clearTimeout(watch.timer);
  }

  /** Stops every check. */
  close(): void {
    for (const taskId of [...this.#watches.keys()]) this.unwatch(taskId);
  }
}
