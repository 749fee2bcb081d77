import type Docker from "dockerode";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { type Task, TaskState } from "../../gen/cube/v1/task_pb.js";
import { type MetricsServing, serveMetrics } from "../../lib/metrics/endpoint.js";
import { stateName } from "../../lib/task-state.js";

/** A Docker API call: milliseconds for most, seconds for a stop (its grace) or a pull. */
const DOCKER_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Every task state cube sets, each shown (from 0) in the containers gauge. */
const TASK_STATES: readonly TaskState[] = Object.values(TaskState).filter(
  (v): v is TaskState => typeof v === "number" && v !== TaskState.UNSPECIFIED,
);

/** Docker API paths whose second segment is an operation, not an id or a name. */
const COLLECTION_OPS = new Set(["create", "json", "prune", "load", "search", "get"]);

/** Operations on one object (the segment after its id); anything else is part of a name. */
const OBJECT_OPS = new Set([
  "archive",
  "attach",
  "changes",
  "exec",
  "export",
  "get",
  "history",
  "json",
  "kill",
  "logs",
  "pause",
  "push",
  "rename",
  "resize",
  "restart",
  "start",
  "stats",
  "stop",
  "tag",
  "top",
  "unpause",
  "update",
  "wait",
]);

/**
 * The Docker API path of a call with its ids and names taken out, so the label keeps a few
 * values: "/containers/3f2a…/start?" → "/containers/{id}/start", "/images/cube/httpd:local/json"
 * → "/images/{id}/json", "/containers/create?" → "/containers/create", DELETE
 * "/images/cube/httpd:local" → "/images/{id}".
 */
export function dockerEndpoint(path: string): string {
  const parts = path.split("?", 1)[0]?.split("/").filter(Boolean) ?? [];
  // dockerode puts the API version first when it is pinned ("/v1.41/containers/…").
  if (/^v\d+\.\d+$/.test(parts[0] ?? "")) parts.shift();
  const [resource, ...rest] = parts;
  if (!resource) return "/";
  if (rest.length === 0) return `/${resource}`;
  if (rest.length === 1) {
    return COLLECTION_OPS.has(rest[0] as string) ? `/${resource}/${rest[0]}` : `/${resource}/{id}`;
  }
  // The last segment is the operation when it is one; everything between it and the
  // resource is the id (image names hold slashes: DELETE /images/cube/httpd is no operation).
  const last = rest.at(-1) as string;
  return OBJECT_OPS.has(last) ? `/${resource}/{id}/${last}` : `/${resource}/{id}`;
}

/** What the worker's metrics read at a scrape. */
export interface WorkerMetricsSource {
  /** The worker's task records. */
  tasks(): readonly Task[];
}

/**
 * A worker's metrics, in a registry of its own (a bench host runs hundreds of workers in one
 * process): its containers by state, health-check results, stream reconnects and Docker API
 * latency, then the RPC metrics of its own server, served with the process metrics at
 * GET /metrics on the worker's port.
 */
export class WorkerMetrics {
  readonly registry = new Registry();
  #source: WorkerMetricsSource | undefined;
  readonly #healthChecks: Counter<"result">;
  readonly #reconnects: Counter;
  readonly #connected: Gauge;
  readonly #docker: Histogram<"method" | "endpoint" | "result">;
  readonly #starts: Counter<"network">;
  #sandboxesReady: (() => number) | undefined;

  constructor() {
    const self = this;
    new Gauge<"state">({
      name: "cube_worker_containers",
      help: "Containers of this worker's tasks, by task state: SCHEDULED (created, starting), RUNNING, COMPLETED or FAILED (exited, not removed: a stopped task's container is).",
      labelNames: ["state"],
      registers: [this.registry],
      collect() {
        const counts = new Map<TaskState, number>(TASK_STATES.map((s) => [s, 0]));
        for (const task of self.#source?.tasks() ?? []) {
          if (task.containerId) counts.set(task.state, (counts.get(task.state) ?? 0) + 1);
        }
        for (const [state, n] of counts) this.set({ state: stateName(state) }, n);
      },
    });
    this.#healthChecks = new Counter({
      name: "cube_worker_health_checks_total",
      help: "Health-check probes made by this worker, by result (healthy: HTTP 200).",
      labelNames: ["result"],
      registers: [this.registry],
    });
    // Shown from 0, so a rate() over them works from the first scrape.
    this.#healthChecks.inc({ result: "healthy" }, 0);
    this.#healthChecks.inc({ result: "unhealthy" }, 0);
    this.#reconnects = new Counter({
      name: "cube_worker_stream_reconnects_total",
      help: "Times the worker's stream to the manager was established again after the first time.",
      registers: [this.registry],
    });
    this.#connected = new Gauge({
      name: "cube_worker_stream_connected",
      help: "1 while the worker's stream to the manager is up (registered), else 0.",
      registers: [this.registry],
    });
    this.#starts = new Counter({
      name: "cube_worker_container_starts_total",
      help: "Containers this worker started, by network: sandbox (it joined a warm network sandbox) or own (the engine made its network as it started).",
      labelNames: ["network"],
      registers: [this.registry],
    });
    this.#starts.inc({ network: "sandbox" }, 0);
    this.#starts.inc({ network: "own" }, 0);
    new Gauge({
      name: "cube_worker_network_sandboxes_ready",
      help: "Warm network sandboxes ready for the next task that publishes no port.",
      registers: [this.registry],
      collect() {
        this.set(self.#sandboxesReady?.() ?? 0);
      },
    });
    this.#docker = new Histogram({
      name: "cube_worker_docker_request_duration_seconds",
      help: "Docker Engine API calls, until their answer starts (a stream's first bytes), by method, endpoint and result (ok, the HTTP status of a failure, or error).",
      labelNames: ["method", "endpoint", "result"],
      buckets: DOCKER_BUCKETS,
      registers: [this.registry],
    });
  }

  /** Where the containers gauge reads the worker's tasks (set once they are loaded). */
  readTasksFrom(source: WorkerMetricsSource): void {
    this.#source = source;
  }

  /** A container started, in a warm network sandbox or with its own network. */
  containerStarted(network: "sandbox" | "own"): void {
    this.#starts.inc({ network });
  }

  /** Where the sandboxes gauge reads how many are ready. */
  readSandboxesFrom(ready: () => number): void {
    this.#sandboxesReady = ready;
  }

  /** One health-check probe ended. */
  healthCheck(healthy: boolean): void {
    this.#healthChecks.inc({ result: healthy ? "healthy" : "unhealthy" });
  }

  /** Follows the stream client's "connected" and "disconnected" events. */
  watchStream(stream: {
    on(event: "connected", fn: () => void): unknown;
    on(event: "disconnected", fn: () => void): unknown;
  }): void {
    let connections = 0;
    stream.on("connected", () => {
      if (connections++ > 0) this.#reconnects.inc();
      this.#connected.set(1);
    });
    stream.on("disconnected", () => this.#connected.set(0));
  }

  /**
   * Times every call `docker` makes: its modem's dial is where each dockerode call goes,
   * with a callback that runs when the answer (or a stream's start) arrives.
   */
  instrumentDocker(docker: Docker): void {
    const modem = docker.modem as unknown as {
      dial(options: { method?: string; path?: string }, callback: DialCallback): void;
    };
    const dial = modem.dial.bind(modem);
    const histogram = this.#docker;
    modem.dial = (options, callback) => {
      // Read before dial: it prefixes the path with the API version in place.
      const method = options.method ?? "GET";
      const endpoint = dockerEndpoint(options.path ?? "/");
      const started = performance.now();
      dial(options, (error, data) => {
        const result = error
          ? String((error as { statusCode?: number }).statusCode ?? "error")
          : "ok";
        histogram.observe({ method, endpoint, result }, (performance.now() - started) / 1000);
        callback(error, data);
      });
    };
  }

  /** GET /metrics and the RPC interceptor for the worker's server. */
  serving(): MetricsServing {
    return serveMetrics(this.registry);
  }
}

type DialCallback = (error: Error | null, data?: unknown) => void;
