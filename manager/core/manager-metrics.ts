import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Gauge, Registry } from "prom-client";
import { type Task, TaskState } from "../../gen/cube/v1/task_pb.js";
import { WorkerStatus } from "../../gen/cube/v1/worker_pb.js";
import { type HistogramSeries, LightCounter, LightHistogram } from "../../lib/metrics/light.js";
import { stateName } from "../../lib/task-state.js";
import { TASK_STATES, TaskCounts } from "./task-counts.js";

/** Every worker status cube sets, in the enum's order. */
const WORKER_STATUSES: readonly WorkerStatus[] = Object.values(WorkerStatus).filter(
  (v): v is WorkerStatus => typeof v === "number" && v !== WorkerStatus.UNSPECIFIED,
);

/** One scheduler run (select → score → pick over ~100 nodes): tens of microseconds. */
const DECISION_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
];
/** Acceptance to first placement: at once when a worker has room, else until one has. */
const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
];
/** One group commit (a synced LevelDB batch): milliseconds, more under bursts. */
const COMMIT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

function ms(t: Timestamp): number {
  return Number(t.seconds) * 1000 + t.nanos / 1e6;
}

/** What the metrics read of the control plane at a scrape. */
export interface MetricsSource {
  /** Every worker the manager knows (a hundred or so: read at each scrape). */
  workers(): Iterable<{ readonly status: WorkerStatus }>;
}

/**
 * The manager's own metrics, in a registry of their own (one per control plane, so tests and
 * `cube dev` can run several): tasks by state and workers by status (gauges read at scrape
 * time: the task counts kept incrementally, the workers counted), placements, scheduling
 * latency and decision time, store commit time. Names follow Prometheus's conventions: a
 * `cube_` prefix, base units (`_seconds`), `_total` on counters, and labels of a few values
 * each (never a task or worker id). Served at GET /metrics with the RPC and process metrics
 * (manager/api/metrics-http.ts).
 *
 * What runs once per placement (counts, placements, the histograms) touches numbers only
 * (lib/metrics/light.ts): no allocation on the hot path.
 */
export class ManagerMetrics {
  readonly registry = new Registry();
  readonly tasks = new TaskCounts();
  readonly placements: LightCounter;
  /** One run of the scheduler that placed the task. */
  readonly decidedPlaced: HistogramSeries;
  /** One run of the scheduler that found no worker (the task stays or goes PENDING). */
  readonly decidedUnplaced: HistogramSeries;
  readonly #latency: LightHistogram;
  readonly #commits: LightHistogram;

  constructor(source: MetricsSource) {
    const counts = this.tasks;
    new Gauge({
      name: "cube_tasks",
      help: "Tasks by state, as cube ps shows them (kept in step with every change, not counted per scrape).",
      labelNames: ["state"],
      registers: [this.registry],
      collect() {
        for (const state of TASK_STATES) this.set({ state: stateName(state) }, counts.get(state));
      },
    });
    new Gauge({
      name: "cube_workers",
      help: "Workers the manager knows, by status.",
      labelNames: ["status"],
      registers: [this.registry],
      collect() {
        const by = new Map<WorkerStatus, number>(WORKER_STATUSES.map((s) => [s, 0]));
        for (const w of source.workers()) by.set(w.status, (by.get(w.status) ?? 0) + 1);
        for (const [status, n] of by)
          this.set({ status: WorkerStatus[status] ?? String(status) }, n);
      },
    });
    this.placements = new LightCounter(
      this.registry,
      "cube_placements_total",
      "Tasks assigned to a worker: first placements, restarts and moves (each a new generation).",
    );
    const decisions = new LightHistogram(this.registry, {
      name: "cube_scheduler_decision_duration_seconds",
      help: "Time of one scheduler run (select, score, pick), by whether it placed the task.",
      buckets: DECISION_BUCKETS,
      label: { name: "result", values: ["placed", "unplaced"] },
    });
    this.decidedPlaced = decisions.series("placed");
    this.decidedUnplaced = decisions.series("unplaced");
    this.#latency = new LightHistogram(this.registry, {
      name: "cube_scheduling_latency_seconds",
      help: "Time from a task's acceptance to its first placement on a worker (the manager's clock).",
      buckets: LATENCY_BUCKETS,
    });
    this.#commits = new LightHistogram(this.registry, {
      name: "cube_store_commit_duration_seconds",
      help: "Time of one group commit of the store (a synced LevelDB batch), from its start to on disk.",
      buckets: COMMIT_BUCKETS,
    });
  }

  /**
   * Books one change of a task: `before` undefined for a new or just-loaded task (counted,
   * not placed). A new generation in SCHEDULED is a placement; the first one of a task also
   * gives its scheduling latency.
   */
  taskChanged(before: Task | undefined, after: Task): void {
    this.tasks.move(before?.state, after.state);
    if (
      before === undefined ||
      after.state !== TaskState.SCHEDULED ||
      after.generation === before.generation
    ) {
      return;
    }
    this.placements.inc();
    if (before.scheduledAt === undefined && after.scheduledAt && after.createdAt) {
      this.#latency.observe(Math.max(0, ms(after.scheduledAt) - ms(after.createdAt)) / 1000);
    }
  }

  /** One group commit took `seconds`. */
  committed(seconds: number): void {
    this.#commits.observe(seconds);
  }
}
