/**
 * Container usage sampled in the background. A one-shot stats call takes about a
 * second (the daemon waits for its next sample), so each running container keeps one
 * streaming stats request open and only its latest sample is remembered; readers get
 * it synchronously.
 */
import type { Readable } from "node:stream";
import type Docker from "dockerode";
import type { Logger } from "../../lib/logger.js";
import type { ContainerStats } from "../tasks/driver.js";
import { onJsonLines } from "./json-lines.js";

interface CpuStats {
  readonly cpu_usage?: { total_usage?: number; percpu_usage?: number[] };
  readonly system_cpu_usage?: number;
  readonly online_cpus?: number;
}

/** The part of Docker's stats JSON this module reads. */
export interface DockerStatsSample {
  readonly read?: string;
  readonly cpu_stats?: CpuStats;
  readonly precpu_stats?: CpuStats;
  readonly memory_stats?: {
    usage?: number;
    stats?: Record<string, number>;
  };
}

/**
 * CPU in percent of one core (200 = two cores busy), as `docker stats` computes it:
 * the container's share of the host's CPU time since the previous sample, times cores.
 */
export function cpuPercent(sample: DockerStatsSample): number {
  const cpu = sample.cpu_stats;
  const pre = sample.precpu_stats;
  const systemDelta = (cpu?.system_cpu_usage ?? 0) - (pre?.system_cpu_usage ?? 0);
  const cpuDelta = (cpu?.cpu_usage?.total_usage ?? 0) - (pre?.cpu_usage?.total_usage ?? 0);
  // The first sample has no previous one: its system delta is the whole uptime, meaningless.
  if (!pre?.system_cpu_usage || systemDelta <= 0 || cpuDelta < 0) return 0;
  const cores = cpu?.online_cpus || cpu?.cpu_usage?.percpu_usage?.length || 1;
  return (cpuDelta / systemDelta) * cores * 100;
}

/** Memory in use without the reclaimable page cache, as `docker stats` shows it. */
export function memoryUsed(sample: DockerStatsSample): number {
  const memory = sample.memory_stats;
  const usage = memory?.usage ?? 0;
  const stats = memory?.stats ?? {};
  const cache = stats.total_inactive_file ?? stats.inactive_file ?? stats.cache ?? 0;
  return Math.max(0, usage - cache);
}

interface Tracked {
  stream?: Readable;
  readonly memoryLimitBytes: bigint;
  latest?: ContainerStats;
}

/** Keeps a stats stream open per tracked container and remembers the latest sample of each. */
export class StatsSampler {
  readonly #docker: Docker;
  readonly #logger: Logger | undefined;
  readonly #tracked = new Map<string, Tracked>();

  constructor(docker: Docker, logger?: Logger) {
    this.#docker = docker;
    this.#logger = logger;
  }

  /** Starts sampling a running container (no-op when already sampled). 0 limit = none. */
  track(containerId: string, memoryLimitBytes: bigint): void {
    if (this.#tracked.has(containerId)) return;
    const tracked: Tracked = { memoryLimitBytes };
    this.#tracked.set(containerId, tracked);
    this.#docker
      .getContainer(containerId)
      .stats({ stream: true })
      .then((raw) => {
        const stream = raw as unknown as Readable;
        if (this.#tracked.get(containerId) !== tracked) {
          stream.destroy();
          return;
        }
        tracked.stream = stream;
        onJsonLines(stream, (line) => this.#onSample(containerId, tracked, line));
        const ended = () => {
          if (this.#tracked.get(containerId) === tracked) this.#tracked.delete(containerId);
        };
        stream.on("end", ended);
        stream.on("close", ended);
        stream.on("error", ended);
      })
      .catch((error: unknown) => {
        this.#logger?.debug({ err: error, containerId }, "stats stream did not open");
        if (this.#tracked.get(containerId) === tracked) this.#tracked.delete(containerId);
      });
  }

  #onSample(containerId: string, tracked: Tracked, line: string): void {
    let sample: DockerStatsSample;
    try {
      sample = JSON.parse(line) as DockerStatsSample;
    } catch {
      return;
    }
    // A stopped container streams zero-time samples: it is no longer running.
    if (!sample.read || sample.read.startsWith("0001-")) {
      this.untrack(containerId);
      return;
    }
    const timeMs = Date.parse(sample.read);
    tracked.latest = {
      containerId,
      cpuPercent: cpuPercent(sample),
      memoryUsedBytes: BigInt(Math.round(memoryUsed(sample))),
      memoryLimitBytes: tracked.memoryLimitBytes,
      timeMs: Number.isNaN(timeMs) ? Date.now() : timeMs,
    };
  }

  /** Stops sampling a container and forgets its sample. */
  untrack(containerId: string): void {
    const tracked = this.#tracked.get(containerId);
    if (!tracked) return;
    this.#tracked.delete(containerId);
    tracked.stream?.destroy();
  }

  /** The latest sample of each tracked container that has one. */
  samples(): ContainerStats[] {
    const result: ContainerStats[] = [];
    for (const tracked of this.#tracked.values()) if (tracked.latest) result.push(tracked.latest);
    return result;
  }

  /** Ends every stats stream. */
  close(): void {
    for (const id of [...this.#tracked.keys()]) this.untrack(id);
  }
}
