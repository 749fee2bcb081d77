/**
 * The Docker driver: cube's only real container runtime, on dockerode. Starts are
 * idempotent per (task, generation, worker) through a deterministic container name;
 * exits come from one shared event subscription; usage comes from background stats
 * streams, so no call here waits on a Docker sample.
 */
import Docker from "dockerode";
import type { Logger } from "../../lib/logger.js";
import {
  type ContainerInfo,
  type ContainerRequest,
  type ContainerStats,
  type Driver,
  DriverError,
  type ExitStatus,
  type LogChunk,
  type PullProgress,
} from "../tasks/driver.js";
import {
  type ContainerPolicy,
  checkRegistry,
  containerInfo,
  createOptions,
  DEFAULT_POLICY,
  LABEL_GENERATION,
  LABEL_TASK,
  LABEL_WORKER,
} from "./container-spec.js";
import {
  dockerMessage,
  dockerStatus,
  engineUnavailable,
  isNotFound,
  isUnreachable,
  tolerating,
} from "./errors.js";
import { ExitWatcher } from "./exit-watcher.js";
import { containerLogs } from "./logs.js";
import { DEFAULT_PULL_STALL_MS, pullImage } from "./pull.js";
import { StatsSampler } from "./stats.js";

/** How to reach the engine. */
export interface DockerDriverOptions {
  /** "unix:///var/run/docker.sock", "tcp://127.0.0.1:2375" or a socket path; default: DOCKER_HOST or the local socket. */
  readonly dockerHost?: string;
  readonly logger?: Logger;
  /** Handed the client before first use, to measure its calls (WorkerMetrics.instrumentDocker). */
  readonly instrument?: (docker: Docker) => void;
  /** How containers are confined; default {@link DEFAULT_POLICY}. */
  readonly policy?: ContainerPolicy;
  /** A pull without progress for this long is cancelled; 0 never. Default {@link DEFAULT_PULL_STALL_MS}. */
  readonly pullStallMs?: number;
}

/** A dockerode client for `dockerHost` (undefined → dockerode's defaults, which honour DOCKER_HOST). */
export function dockerClient(dockerHost?: string): Docker {
  if (!dockerHost) return new Docker();
  if (dockerHost.startsWith("unix://")) return new Docker({ socketPath: dockerHost.slice(7) });
  if (dockerHost.startsWith("/")) return new Docker({ socketPath: dockerHost });
  const url = new URL(dockerHost.replace(/^tcp:/, "http:"));
  return new Docker({
    host: url.hostname,
    port: Number(url.port || 2375),
    protocol: url.protocol === "https:" ? "https" : "http",
  });
}

/** Creates the Docker driver. Background work (events, stats) starts with the first container. */
export function createDockerDriver(options: DockerDriverOptions = {}): Driver {
  const docker = dockerClient(options.dockerHost);
  options.instrument?.(docker);
  return new DockerDriver(
    docker,
    options.logger,
    options.policy ?? DEFAULT_POLICY,
    options.pullStallMs ?? DEFAULT_PULL_STALL_MS,
  );
}

const PORT_TAKEN = /port is already allocated|address already in use/i;

/** How long a ping may take before the engine counts as not answering. */
const PING_TIMEOUT_MS = 3000;

class DockerDriver implements Driver {
  readonly #docker: Docker;
  readonly #logger: Logger | undefined;
  readonly #stats: StatsSampler;
  readonly #exits: ExitWatcher;
  readonly #lost = new Set<(reason: string) => void>();
  readonly #policy: ContainerPolicy;
  readonly #pullStallMs: number;

  constructor(
    docker: Docker,
    logger: Logger | undefined,
    policy: ContainerPolicy,
    pullStallMs: number,
  ) {
    this.#docker = docker;
    this.#logger = logger;
    this.#policy = policy;
    this.#pullStallMs = pullStallMs;
    this.#stats = new StatsSampler(docker, logger);
    this.#exits = new ExitWatcher(
      docker,
      (id) => this.#stats.untrack(id),
      logger,
      (reason) => this.#engineLost(reason),
    );
  }

  onEngineLost(listener: (reason: string) => void): void {
    this.#lost.add(listener);
  }

  #engineLost(reason: string): void {
    for (const listener of this.#lost) listener(reason);
  }

  /**
   * Runs one call to the engine: one that could not reach it at all fails with a DriverError
   * "engine-unavailable" (and tells the engine monitor), whatever the call was.
   */
  async #guard<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      const unavailable =
        error instanceof DriverError
          ? error.kind === "engine-unavailable"
            ? error
            : undefined
          : isUnreachable(error)
            ? engineUnavailable(error)
            : undefined;
      if (!unavailable) throw error;
      this.#engineLost(unavailable.message);
      throw unavailable;
    }
  }

  async ping(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.#docker.ping(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer to a ping within ${PING_TIMEOUT_MS} ms`)),
            PING_TIMEOUT_MS,
          );
        }),
      ]);
    } catch (error) {
      throw new Error(`the Docker engine does not answer: ${dockerMessage(error)}`, {
        cause: error,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  pull(image: string, onProgress: (p: PullProgress) => void): Promise<void> {
    return this.#guard(async () => {
      // Refused before anything leaves the machine: the registry may be the attacker's.
      checkRegistry(image, this.#policy);
      await pullImage(this.#docker, image, onProgress, {
        logger: this.#logger,
        stallMs: this.#pullStallMs,
      });
    });
  }

  start(request: ContainerRequest): Promise<ContainerInfo> {
    return this.#guard(() => this.#start(request));
  }

  async #start(request: ContainerRequest): Promise<ContainerInfo> {
    const options = createOptions(request, this.#policy);
    // Subscribing before the container runs means no exit can slip past unnoticed.
    await this.#exits.subscribe();
    let container: Docker.Container;
    try {
      container = await this.#docker.createContainer(options);
    } catch (error) {
      if (dockerStatus(error) === 409) return this.#adopt(options.name ?? "", request);
      throw createError(error, request.spec.image);
    }
    await this.#startCreated(container, request);
    try {
      return await this.#running(container);
    } catch (error) {
      // Unreachable: the container stays for the retry to find by name. Anything else would
      // fail the task with its container running on, unknown to the worker: remove it.
      if (isUnreachable(error)) throw engineUnavailable(error);
      await tolerating([404, 409], () => container.remove({ force: true, v: true })).catch(
        () => undefined,
      );
      throw new DriverError(
        `cannot inspect the started container: ${dockerMessage(error)}`,
        "runtime",
      );
    }
  }

  /** Starts a created container; on failure removes it, so a failed start leaves nothing behind. */
  async #startCreated(container: Docker.Container, request: ContainerRequest): Promise<void> {
    try {
      await container.start();
    } catch (error) {
      // 304: a concurrent start of the same assignment got there first, which is the goal.
      if (dockerStatus(error) === 304) return;
      // The engine went away mid-start: the container stays for the retry to find by name.
      if (isUnreachable(error)) throw engineUnavailable(error);
      await tolerating([404, 409], () => container.remove({ force: true, v: true }));
      const message = dockerMessage(error);
      if (PORT_TAKEN.test(message)) {
        const port =
          /:(\d+)(?: failed|: bind)/.exec(message)?.[1] ??
          request.spec.ports.find((p) => p.hostPort !== 0)?.hostPort;
        throw new DriverError(`host port ${port} is already taken`, "port-taken");
      }
      const kind = dockerStatus(error) === 400 ? "invalid-spec" : "runtime";
      throw new DriverError(`cannot start container: ${message}`, kind);
    }
  }

  async #running(container: Docker.Container): Promise<ContainerInfo> {
    const inspect = await container.inspect();
    if (inspect.State.Running)
      this.#stats.track(inspect.Id, BigInt(inspect.HostConfig.Memory ?? 0));
    return containerInfo(inspect);
  }

  /** The container of this very assignment exists already (a repeated RUN): use it. */
  async #adopt(name: string, request: ContainerRequest): Promise<ContainerInfo> {
    const container = this.#docker.getContainer(name);
    let inspect: Docker.ContainerInspectInfo;
    try {
      inspect = await container.inspect();
    } catch (error) {
      if (isUnreachable(error)) throw engineUnavailable(error);
      throw new DriverError(`container name ${name} is taken: ${dockerMessage(error)}`, "runtime");
    }
    const labels = inspect.Config.Labels ?? {};
    if (
      labels[LABEL_TASK] !== request.taskId ||
      labels[LABEL_WORKER] !== request.workerId ||
      labels[LABEL_GENERATION] !== request.generation.toString()
    ) {
      throw new DriverError(`container name ${name} is taken by another container`, "runtime");
    }
    this.#logger?.info({ containerId: inspect.Id, taskId: request.taskId }, "adopting container");
    if (inspect.State.Status === "created") await this.#startCreated(container, request);
    return this.#running(container);
  }

  wait(containerId: string): Promise<ExitStatus> {
    return this.#exits.wait(containerId);
  }

  async stop(containerId: string, graceMs: number): Promise<void> {
    const t = Math.max(0, Math.ceil(graceMs / 1000));
    await this.#guard(() =>
      tolerating([304, 404], () => this.#docker.getContainer(containerId).stop({ t })),
    );
    this.#stats.untrack(containerId);
  }

  async destroy(containerId: string): Promise<void> {
    this.#stats.untrack(containerId);
    // 409: a removal is already in progress, which is what was asked for. `v`: the anonymous
    // volumes of an image's VOLUME go with the container (else each generation leaves one).
    await this.#guard(() =>
      tolerating([404, 409], () =>
        this.#docker.getContainer(containerId).remove({ force: true, v: true }),
      ),
    );
  }

  async inspect(containerId: string): Promise<ContainerInfo | undefined> {
    try {
      return containerInfo(await this.#docker.getContainer(containerId).inspect());
    } catch (error) {
      if (isNotFound(error)) return undefined;
      if (isUnreachable(error)) {
        const unavailable = engineUnavailable(error);
        this.#engineLost(unavailable.message);
        throw unavailable;
      }
      throw new DriverError(`cannot inspect ${containerId}: ${dockerMessage(error)}`, "runtime");
    }
  }

  stats(): readonly ContainerStats[] {
    return this.#stats.samples();
  }

  logs(
    containerId: string,
    options: { follow: boolean; tail: number; signal: AbortSignal },
  ): AsyncIterable<LogChunk> {
    const container = this.#docker.getContainer(containerId);
    return (async function* () {
      try {
        yield* containerLogs(container, options);
      } catch (error) {
        if (error instanceof DriverError || options.signal.aborted) throw error;
        if (isUnreachable(error)) throw engineUnavailable(error);
        throw new DriverError(
          `cannot read logs of ${containerId}: ${dockerMessage(error)}`,
          isNotFound(error) ? "container-gone" : "runtime",
        );
      }
    })();
  }

  recover(workerId: string): Promise<ContainerInfo[]> {
    return this.#guard(() => this.#recover(workerId));
  }

  async #recover(workerId: string): Promise<ContainerInfo[]> {
    await this.#exits.subscribe();
    const list = await this.#docker.listContainers({
      all: true,
      filters: { label: [`${LABEL_WORKER}=${workerId}`] },
    });
    const infos = await Promise.all(
      list.map(async (summary) => {
        try {
          return await this.#running(this.#docker.getContainer(summary.Id));
        } catch (error) {
          if (isNotFound(error)) return undefined; // removed between list and inspect
          throw error;
        }
      }),
    );
    return infos.filter((info): info is ContainerInfo => info !== undefined);
  }

  async close(): Promise<void> {
    this.#exits.close();
    this.#stats.close();
  }
}

function createError(error: unknown, image: string): DriverError {
  if (isUnreachable(error)) return engineUnavailable(error);
  const message = dockerMessage(error);
  const status = dockerStatus(error);
  if (status === 404 && /no such image/i.test(message)) {
    return new DriverError(`image ${image} is not present: ${message}`, "image-not-found");
  }
  if (status === 400) return new DriverError(`invalid container spec: ${message}`, "invalid-spec");
  return new DriverError(`cannot create container: ${message}`, "runtime");
}
