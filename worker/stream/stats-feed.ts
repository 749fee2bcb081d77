import { EventEmitter } from "node:events";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type NodeMetrics,
  type TaskMetrics,
  TaskMetricsSchema,
} from "../../gen/cube/v1/metrics_pb.js";
import type { Task } from "../../gen/cube/v1/task_pb.js";
import type { Driver } from "../tasks/driver.js";

/** One sample of the node and its tasks. */
export interface StatsSample {
  readonly node: NodeMetrics;
  readonly tasks: TaskMetrics[];
}

/** What a {@link StatsFeed} reads from. */
export interface StatsFeedOptions {
  readonly workerId: string;
  /** The latest node sample (never waits). */
  readonly node: () => NodeMetrics;
  readonly driver: Driver;
  /** The worker's task records, to name each container's task. */
  readonly tasks: () => Task[];
  /** Time between samples sent up the stream and to watchers. */
  readonly intervalMs: number;
}

/**
 * Joins the node sampler and the driver's container samples into one {@link StatsSample}
 * every interval, for the manager (Stats up the stream) and the worker's own
 * MetricsService. Everything it reads is already sampled in the background, so a
 * sample costs no probe. Emits "sample".
 */
export class StatsFeed extends EventEmitter<{ sample: [StatsSample] }> {
  readonly #o: StatsFeedOptions;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: StatsFeedOptions) {
    super();
    this.#o = options;
  }

  /** Starts emitting a sample every interval. */
  start(): void {
    this.#timer ??= setInterval(() => this.emit("sample", this.sample()), this.#o.intervalMs);
    this.#timer.unref();
  }

  /** A sample now. */
  sample(): StatsSample {
    return { node: this.#o.node(), tasks: this.taskMetrics() };
  }

  /** The latest sample of each running task's container. */
  taskMetrics(): TaskMetrics[] {
    const byContainer = new Map(this.#o.tasks().map((t) => [t.containerId, t]));
    const out: TaskMetrics[] = [];
    for (const s of this.#o.driver.stats()) {
      const task = byContainer.get(s.containerId);
      if (!task) continue;
      out.push(
        create(TaskMetricsSchema, {
          taskId: task.id,
          workerId: this.#o.workerId,
          containerId: s.containerId,
          time: timestampFromMs(s.timeMs),
          cpuPercent: s.cpuPercent,
          memoryUsedBytes: s.memoryUsedBytes,
          memoryLimitBytes: s.memoryLimitBytes,
        }),
      );
    }
    return out;
  }

  /** Stops the timer. */
  close(): void {
    clearInterval(this.#timer);
    this.removeAllListeners();
  }
}
