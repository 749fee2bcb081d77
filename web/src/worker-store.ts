/**
 * The workers, live over one WatchWorkers stream: it sends every worker first, then a worker
 * again whenever its status, tasks or metrics change — its latest node sample included, so
 * the page needs no WatchMetrics stream of its own (a browser has six HTTP/1.1 connections
 * per host, and every open stream holds one) — and its scheduling state (cordoned, drain), so
 * the nodes view needs no ListNodes to follow a cordon or a drain made from the CLI. The
 * samples seen are kept for the usage chart.
 */
import type { Drain } from "../../gen/cube/v1/node_service_pb.js";
import type { Worker } from "../../gen/cube/v1/worker_pb.js";
import type { Api } from "./api.js";
import { ms, percent } from "./format.js";
import { FrameNotifier } from "./frame-notifier.js";
import { type Following, follow, type LinkState } from "./live-stream.js";

/** One node sample, reduced to what the chart draws. */
export interface UsagePoint {
  /** Seconds since the epoch (uPlot's x). */
  readonly t: number;
  readonly cpu: number;
  readonly memory: number;
  readonly disk: number;
}

/** A worker's scheduling state, as WatchWorkers sends it with the worker. */
export interface Scheduling {
  /** No new task is placed on it. */
  readonly cordoned: boolean;
  /** Its current or last drain (undefined: never drained). */
  readonly drain: Drain | undefined;
}

/** How much history the chart keeps per worker. */
const HISTORY_SECONDS = 10 * 60;

/** The live workers of the page. */
export class WorkerStore extends FrameNotifier {
  readonly byId = new Map<string, Worker>();
  /** Recent samples per worker id, oldest first. */
  readonly history = new Map<string, UsagePoint[]>();
  /** Each worker's scheduling state, by worker id, as of its latest message. */
  readonly scheduling = new Map<string, Scheduling>();
  loaded = false;
  link: LinkState = { kind: "connecting" };
  #following: Following | undefined;

  constructor(private readonly api: Api) {
    super();
  }

  start(): void {
    if (this.#following) return;
    this.#following = follow({
      open: (signal) => this.api.workers.watchWorkers({}, { signal }),
      onMessage: (res) => {
        if (res.worker && res.removed) {
          // Forgotten (cube node rm): it leaves every view.
          this.byId.delete(res.worker.id);
          this.history.delete(res.worker.id);
          this.scheduling.delete(res.worker.id);
        } else if (res.worker) {
          this.#put(res.worker);
          this.scheduling.set(res.worker.id, { cordoned: res.cordoned, drain: res.drain });
        }
        this.loaded = true;
        this.changed();
      },
      onState: (state) => {
        this.link = state;
        // A watch open with no worker at all sends nothing: the cluster is empty. One that
        // failed says nothing of it (the header says the manager is out of reach).
        if (state.kind === "live") this.loaded = true;
        this.changed();
      },
    });
  }

  stop(): void {
    this.#following?.stop();
    this.#following = undefined;
  }

  /** A worker's name, or its short id while unknown. */
  name(id: string): string {
    return this.byId.get(id)?.name || id.slice(0, 12);
  }

  #put(worker: Worker): void {
    this.byId.set(worker.id, worker);
    const m = worker.metrics;
    const t = ms(m?.time);
    if (!m || t === undefined) return;
    let points = this.history.get(worker.id);
    if (!points) {
      points = [];
      this.history.set(worker.id, points);
    }
    const last = points.at(-1);
    // The same sample comes again with every other change of the worker.
    if (last && last.t >= t / 1000) return;
    points.push({
      t: t / 1000,
      cpu: m.cpuPercent,
      memory: percent(m.memoryTotalBytes - m.memoryAvailableBytes, m.memoryTotalBytes),
      disk: percent(m.diskTotalBytes - m.diskFreeBytes, m.diskTotalBytes),
    });
    const cutoff = t / 1000 - HISTORY_SECONDS;
    let drop = 0;
    while (drop < points.length && (points[drop] as UsagePoint).t < cutoff) drop++;
    if (drop > 0) points.splice(0, drop);
  }
}
