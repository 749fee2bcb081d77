/**
 * The worker node's usage, sampled in the background so that answering a metrics call
 * or a heartbeat never waits on a probe. No probe spawns a process.
 */
import { statfs } from "node:fs/promises";
import { availableParallelism, cpus, freemem, loadavg, totalmem } from "node:os";
import { dirname, resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import * as si from "systeminformation";
import { type NodeMetrics, NodeMetricsSchema } from "../gen/cube/v1/metrics_pb.js";
import type { Logger } from "../lib/logger.js";

/** Where and how often to sample. */
export interface NodeMetricsOptions {
  /** The worker's data directory: its file system is the one whose disk is reported. */
  readonly dataDir: string;
  /** Put into every sample; may be set later through `workerId`. */
  readonly workerId?: string;
  /** Time between samples; default 2 s. */
  readonly intervalMs?: number;
  readonly logger?: Logger;
}

/** Size and free space of the file system holding `path` (its nearest existing ancestor). */
export async function diskOf(path: string): Promise<{ totalBytes: bigint; freeBytes: bigint }> {
  let at = resolve(path);
  for (;;) {
    try {
      // statfs names the file system of the path itself, bind mounts included: no mount-table guessing.
      const fs = await statfs(at, { bigint: true });
      return { totalBytes: fs.blocks * fs.bsize, freeBytes: fs.bavail * fs.bsize };
    } catch (error) {
      const parent = dirname(at);
      if (parent === at) throw error;
      at = parent;
    }
  }
}

/**
 * What a worker offers when no capacity is configured: all cores, all memory, and the
 * free space of the data directory's file system.
 */
export async function defaultCapacity(
  dataDir: string,
): Promise<{ cpu: number; memoryBytes: bigint; diskBytes: bigint }> {
  const disk = await diskOf(dataDir).catch(() => ({ freeBytes: 0n }));
  return {
    cpu: availableParallelism(),
    memoryBytes: BigInt(totalmem()),
    diskBytes: disk.freeBytes,
  };
}

/** Busy and total CPU time over all cores since boot (ms), from node:os. */
function cpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const { times } of cpus()) {
    const used = times.user + times.nice + times.sys + times.irq;
    busy += used;
    total += used + times.idle;
  }
  return { busy, total };
}

/**
 * Percent of all cores busy between two `cpuTimes` readings. Computed here rather than by
 * systeminformation's currentLoad, which on Linux runs `cat /proc/stat | grep` through a
 * synchronous shell on every call: it blocked the worker's event loop on each sample.
 */
export function cpuPercentBetween(
  before: { busy: number; total: number },
  after: { busy: number; total: number },
): number {
  const total = after.total - before.total;
  if (!(total > 0)) return 0;
  return Math.min(100, Math.max(0, ((after.busy - before.busy) / total) * 100));
}

/** Samples CPU, memory, disk and load every interval; `latest()` is always immediate. */
export class NodeMetricsSampler {
  /** Worker id stamped on samples. */
  workerId: string;
  readonly #dataDir: string;
  readonly #logger: Logger | undefined;
  readonly #listeners = new Set<(metrics: NodeMetrics) => void>();
  readonly #timer: NodeJS.Timeout;
  readonly #first: Promise<void>;
  #latest: NodeMetrics;
  #sampling = false;
  #closed = false;
  // From boot for the first sample, as systeminformation did: a figure at once.
  #cpuBefore = { busy: 0, total: 0 };

  constructor(options: NodeMetricsOptions) {
    this.workerId = options.workerId ?? "";
    this.#dataDir = options.dataDir;
    this.#logger = options.logger;
    this.#latest = this.#fromOs();
    this.#first = this.#sample();
    this.#timer = setInterval(() => void this.#sample(), options.intervalMs ?? 2000);
    this.#timer.unref();
  }

  /** A rough sample from node:os alone, until the first real one is in. */
  #fromOs(): NodeMetrics {
    const [load1, load5, load15] = loadavg();
    return create(NodeMetricsSchema, {
      workerId: this.workerId,
      time: timestampFromMs(Date.now()),
      cpuCount: availableParallelism(),
      load1,
      load5,
      load15,
      memoryTotalBytes: BigInt(totalmem()),
      memoryUsedBytes: BigInt(totalmem() - freemem()),
      memoryAvailableBytes: BigInt(freemem()),
    });
  }

  async #sample(): Promise<void> {
    if (this.#sampling || this.#closed) return;
    this.#sampling = true;
    try {
      const [mem, disk] = await Promise.all([si.mem(), diskOf(this.#dataDir)]);
      if (this.#closed) return;
      const cpuNow = cpuTimes();
      const cpuPercent = cpuPercentBetween(this.#cpuBefore, cpuNow);
      this.#cpuBefore = cpuNow;
      const [load1, load5, load15] = loadavg();
      this.#latest = create(NodeMetricsSchema, {
        workerId: this.workerId,
        time: timestampFromMs(Date.now()),
        cpuCount: availableParallelism(),
        cpuPercent,
        load1,
        load5,
        load15,
        memoryTotalBytes: BigInt(mem.total),
        memoryUsedBytes: BigInt(Math.max(0, mem.total - mem.available)),
        memoryAvailableBytes: BigInt(mem.available),
        diskTotalBytes: disk.totalBytes,
        diskFreeBytes: disk.freeBytes,
      });
      for (const listener of this.#listeners) listener(this.#latest);
    } catch (error) {
      this.#logger?.warn({ err: error }, "node metrics sample failed");
    } finally {
      this.#sampling = false;
    }
  }

  /** The latest sample, without waiting (before the first probe: memory and load from node:os). */
  latest(): NodeMetrics {
    if (this.#latest.workerId !== this.workerId) this.#latest.workerId = this.workerId;
    return this.#latest;
  }

  /** Resolves once the first full sample is in (or failed). */
  ready(): Promise<void> {
    return this.#first;
  }

  /** Calls `listener` with each new sample; returns the unsubscribe function. */
  onSample(listener: (metrics: NodeMetrics) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops sampling. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#listeners.clear();
  }
}
