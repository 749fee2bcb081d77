/**
 * The Docker driver: cube's only real container runtime, on dockerode. Starts are
 * idempotent per (task, generation, worker) through a deterministic container name;
 * exits come from one shared event subscription; usage comes from background stats
 * streams, so no call here waits on a Docker sample. Every call but the pull (bounded by its
 * stall timeout) and the streams has the runtime request timeout: a hung engine fails it
 * with a DriverError "engine-timeout" instead of holding the task's queue for good.
 */
import { setTimeout as delay } from "node:timers/promises";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import Docker from "dockerode";
import type { Logger } from "../../lib/logger.js";
import {
  type ContainerInfo,
  type ContainerRequest,
  type ContainerStats,
  type Driver,
  DriverError,
  type ExitStatus,
  isEngineAbsent,
  type LogChunk,
  type PullProgress,
  type StartedContainer,
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
  parseGeneration,
} from "./container-spec.js";
import {
  type Abortable,
  DEFAULT_RUNTIME_REQUEST_TIMEOUT_MS,
  engineTimeout,
  withDeadline,
} from "./deadline.js";
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
import { LABEL_SANDBOX, SandboxPool, sandboxOf } from "./sandbox-pool.js";
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
  /**
   * How long any other call may go unanswered before it is abandoned (a stop: this on top of
   * its grace); 0 never. Default {@link DEFAULT_RUNTIME_REQUEST_TIMEOUT_MS}.
   */
  readonly requestTimeoutMs?: number;
  /**
   * Warm network sandboxes (worker/docker/sandbox-pool.ts): how many to keep ready and the
   * image they run. Default none: every container gets its own network at its start.
   */
  readonly sandboxes?: { readonly size: number; readonly image: string };
  /** Told of every container started, and whether it joined a sandbox (worker metrics). */
  readonly onStarted?: (network: "sandbox" | "own") => void;
  /** Handed a reader of how many sandboxes are ready (worker metrics). */
  readonly readSandboxes?: (ready: () => number) => void;
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
  const driver = new DockerDriver(
    docker,
    options.logger,
    options.policy ?? DEFAULT_POLICY,
    options.pullStallMs ?? DEFAULT_PULL_STALL_MS,
    options.requestTimeoutMs ?? DEFAULT_RUNTIME_REQUEST_TIMEOUT_MS,
    options.sandboxes,
    options.onStarted,
  );
  options.readSandboxes?.(() => driver.sandboxesReady);
  return driver;
}

const PORT_TAKEN = /port is already allocated|address already in use/i;

/** How long a ping may take before the engine counts as not answering. */
const PING_TIMEOUT_MS = 3000;

/** How long a closing driver lets a network sandbox being made finish. */
const CLOSE_FILL_MS = 1000;

class DockerDriver implements Driver {
  readonly #docker: Docker;
  readonly #logger: Logger | undefined;
  readonly #stats: StatsSampler;
  readonly #exits: ExitWatcher;
  readonly #lost = new Set<(reason: string) => void>();
  readonly #started = new Set<(started: StartedContainer) => void>();
  readonly #policy: ContainerPolicy;
  readonly #pullStallMs: number;
  readonly #timeoutMs: number;
  readonly #pool: SandboxPool | undefined;
  /** Deaths of this worker's sandboxes (opened with the pool's first refresh). */
  #sandboxExits: ExitWatcher | undefined;
  /** The network sandbox each container this driver has seen joined, by container id. */
  readonly #sandboxOf = new Map<string, string>();
  /** The sandbox each ContainerInfo's container joined, as its inspect said (ended or not). */
  readonly #joinedOf = new WeakMap<ContainerInfo, string>();
  readonly #onStarted: ((network: "sandbox" | "own") => void) | undefined;

  constructor(
    docker: Docker,
    logger: Logger | undefined,
    policy: ContainerPolicy,
    pullStallMs: number,
    timeoutMs: number,
    sandboxes: { readonly size: number; readonly image: string } | undefined,
    onStarted: ((network: "sandbox" | "own") => void) | undefined,
  ) {
    this.#onStarted = onStarted;
    this.#docker = docker;
    this.#logger = logger;
    this.#policy = policy;
    this.#pullStallMs = pullStallMs;
    this.#timeoutMs = timeoutMs;
    // Made with a size of 0 too: it then keeps none ready, but still removes the sandboxes of
    // an earlier run and those of containers that end.
    this.#pool = sandboxes
      ? new SandboxPool({
          docker,
          size: sandboxes.size,
          image: sandboxes.image,
          timed: (what, call) => this.#timed(what, call),
          logger,
        })
      : undefined;
    this.#stats = new StatsSampler(docker, logger);
    this.#exits = new ExitWatcher(
      docker,
      (id) => {
        this.#stats.untrack(id);
        // An exited container's network is of no more use: cube starts the next generation
        // in a new container.
        this.#releaseSandbox(id);
      },
      logger,
      (reason) => this.#engineLost(reason),
      timeoutMs,
      (containerId, labels) => {
        const started = {
          containerId,
          taskId: labels[LABEL_TASK] ?? "",
          generation: parseGeneration(labels[LABEL_GENERATION]),
        };
        for (const listener of this.#started) listener(started);
      },
    );
  }

  onContainerStarted(listener: (started: StartedContainer) => void): void {
    this.#started.add(listener);
  }

  onEngineLost(listener: (reason: string) => void): void {
    this.#lost.add(listener);
  }

  #engineLost(reason: string): void {
    this.#pool?.invalidate();
    for (const listener of this.#lost) listener(reason);
  }

  /**
   * Runs one call to the engine: one that could not reach it at all fails with a DriverError
   * "engine-unavailable", one it did not answer in time with its "engine-timeout", and
   * either tells the engine monitor, whatever the call was.
   */
  async #guard<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      const absent = engineAbsence(error);
      if (!absent) throw error;
      this.#engineLost(absent.message);
      throw absent;
    }
  }

  /** One call with the runtime request timeout (see {@link withDeadline}). */
  #timed<T>(what: string, call: (options: Abortable) => Promise<T>): Promise<T> {
    return withDeadline(what, this.#timeoutMs, call);
  }

  /** Force-removes a container (and its anonymous volumes), with the runtime request timeout. */
  #remove(id: string): Promise<void> {
    return this.#timed(`the removal of container ${shortId(id)}`, (o) =>
      this.#docker.getContainer(id).remove({ force: true, v: true, ...o }),
    );
  }

  async ping(): Promise<void> {
    try {
      // dockerode's types leave out the options its ping takes.
      const ping = this.#docker.ping.bind(this.#docker) as unknown as (
        options: Abortable,
      ) => Promise<unknown>;
      await withDeadline("a ping", PING_TIMEOUT_MS, ping);
    } catch (error) {
      const words = error instanceof DriverError ? error.message : dockerMessage(error);
      throw new Error(`the Docker engine does not answer: ${words}`, { cause: error });
    }
  }

  pull(image: string, onProgress: (p: PullProgress) => void, signal?: AbortSignal): Promise<void> {
    return this.#guard(async () => {
      // Refused before anything leaves the machine: the registry may be the attacker's.
      checkRegistry(image, this.#policy);
      await pullImage(this.#docker, image, onProgress, {
        signal,
        logger: this.#logger,
        stallMs: this.#pullStallMs,
        requestTimeoutMs: this.#timeoutMs,
      });
    });
  }

  start(request: ContainerRequest): Promise<ContainerInfo> {
    return this.#guard(async () => {
      const info = await this.#start(request);
      this.#onStarted?.(this.#joinedOf.has(info) ? "sandbox" : "own");
      return info;
    });
  }

  /** How many warm network sandboxes are ready now. */
  get sandboxesReady(): number {
    return this.#pool?.ready ?? 0;
  }

  /**
   * Starts the container in a warm network sandbox when the task publishes no port and one is
   * ready; should that start fail for any reason but the engine's absence, it is tried once
   * more with the container's own network (the sandbox may have died unseen).
   */
  async #start(request: ContainerRequest): Promise<ContainerInfo> {
    const pool = this.#pool;
    if (!pool) return this.#startIn(request, undefined);
    const sandbox = request.spec.ports.length > 0 ? undefined : pool.claim();
    if (sandbox === undefined) {
      pool.noteStart();
      try {
        return await this.#startIn(request, undefined);
      } finally {
        pool.noteStart();
      }
    }
    let info: ContainerInfo;
    try {
      info = await this.#startIn(request, sandbox);
    } catch (error) {
      if (isEngineAbsent(error) || !(error instanceof DriverError)) {
        // A container the engine makes late may hold it: the next refresh decides.
        pool.settle(sandbox, true);
        throw error;
      }
      // The container of the failed start was removed: so goes its sandbox.
      for (const [containerId, joined] of this.#sandboxOf) {
        if (joined === sandbox) this.#sandboxOf.delete(containerId);
      }
      pool.settle(sandbox, false);
      if (error.kind !== "runtime" && error.kind !== "invalid-spec") throw error;
      this.#logger?.warn(
        { taskId: request.taskId, err: error.message },
        "the start in a network sandbox failed: starting with its own network",
      );
      return this.#startIn(request, undefined);
    }
    // A repeated start adopts the container of the earlier one, which has its own network.
    pool.settle(sandbox, this.#joinedOf.get(info) === sandbox, info.name);
    return info;
  }

  async #startIn(request: ContainerRequest, sandbox: string | undefined): Promise<ContainerInfo> {
    const options = createOptions(request, this.#policy, sandbox);
    const name = options.name ?? "";
    // Subscribing before the container runs means no exit can slip past unnoticed.
    await this.#exits.subscribe();
    let container: Docker.Container;
    try {
      container = await this.#timed(`the create of container ${name}`, (o) =>
        this.#docker.createContainer({ ...options, ...o }),
      );
      // Known before it starts: an exit that comes before the start's inspect releases it.
      if (sandbox !== undefined) this.#sandboxOf.set(container.id, sandbox);
    } catch (error) {
      // Not answered in time: a container the engine makes late is the retry's, by its name.
      if (error instanceof DriverError) throw error;
      if (dockerStatus(error) === 409) return this.#adopt(name, request);
      throw createError(error, request.spec.image);
    }
    await this.#startCreated(container, request);
    try {
      return await this.#running(container);
    } catch (error) {
      // Unreachable, or no answer in time: the container stays for the retry to find by name.
      // Anything else would fail the task with its container running on, unknown to the
      // worker: remove it.
      if (error instanceof DriverError) throw error;
      if (isUnreachable(error)) throw engineUnavailable(error);
      await tolerating([404, 409], () => this.#remove(container.id)).catch(() => undefined);
      throw new DriverError(
        `cannot inspect the started container: ${dockerMessage(error)}`,
        "runtime",
      );
    }
  }

  /** Starts a created container; on failure removes it, so a failed start leaves nothing behind. */
  async #startCreated(container: Docker.Container, request: ContainerRequest): Promise<void> {
    try {
      await this.#timed(`the start of container ${shortId(container.id)}`, (o) =>
        container.start(o),
      );
    } catch (error) {
      // 304: a concurrent start of the same assignment got there first, which is the goal.
      if (dockerStatus(error) === 304) return;
      // No answer in time (the engine may start it yet), or the engine went away mid-start:
      // the container stays for the retry to find by name.
      if (error instanceof DriverError) throw error;
      if (isUnreachable(error)) throw engineUnavailable(error);
      await tolerating([404, 409], () => this.#remove(container.id));
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
    const inspect = await this.#inspect(container);
    const sandbox = sandboxOf(inspect.HostConfig.NetworkMode);
    if (sandbox !== undefined) {
      this.#sandboxOf.set(inspect.Id, sandbox);
      // Ended already (a quick exit, or while the worker was away): its network is of no use.
      if (!inspect.State.Running) this.#releaseSandbox(inspect.Id);
    }
    if (inspect.State.Running)
      this.#stats.track(inspect.Id, BigInt(inspect.HostConfig.Memory ?? 0));
    const info = containerInfo(inspect);
    if (sandbox !== undefined) this.#joinedOf.set(info, sandbox);
    return info;
  }

  /** The container of this very assignment exists already (a repeated RUN): use it. */
  async #adopt(name: string, request: ContainerRequest): Promise<ContainerInfo> {
    const container = this.#docker.getContainer(name);
    let inspect: Docker.ContainerInspectInfo;
    try {
      inspect = await this.#inspectNamed(container, name);
    } catch (error) {
      if (error instanceof DriverError) throw error;
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

  /**
   * Inspects the container a create was refused for (409: the name is taken). Not found: an
   * earlier create of it, one the worker stopped waiting for, is still under way in the engine
   * (Docker holds the name before the container exists), so it is waited for, up to the
   * runtime request timeout, then left to the next try.
   */
  async #inspectNamed(container: Docker.Container, name: string) {
    const ms = this.#timeoutMs || DEFAULT_RUNTIME_REQUEST_TIMEOUT_MS;
    const giveUpAt = Date.now() + ms;
    for (;;) {
      try {
        return await this.#inspect(container);
      } catch (error) {
        if (!isNotFound(error)) throw error;
        if (Date.now() >= giveUpAt) {
          throw engineTimeout(`the create of container ${name} (an earlier one, under way)`, ms);
        }
        await delay(100);
      }
    }
  }

  /** Inspects a container, with the runtime request timeout. */
  #inspect(container: Docker.Container): Promise<Docker.ContainerInspectInfo> {
    return this.#timed(`the inspect of container ${shortId(container.id)}`, (o) =>
      container.inspect(o),
    );
  }

  wait(containerId: string): Promise<ExitStatus> {
    return this.#exits.wait(containerId);
  }

  async stop(containerId: string, graceMs: number): Promise<void> {
    const t = Math.max(0, Math.ceil(graceMs / 1000));
    // The engine may take the whole grace to answer: the deadline comes on top of it, as the
    // kubelet's does.
    const ms = this.#timeoutMs > 0 ? t * 1000 + this.#timeoutMs : 0;
    await this.#guard(() =>
      tolerating([304, 404], () =>
        withDeadline(`the stop of container ${shortId(containerId)}`, ms, (o) =>
          this.#docker.getContainer(containerId).stop({ t, ...o }),
        ),
      ),
    );
    this.#stats.untrack(containerId);
  }

  async destroy(containerId: string): Promise<void> {
    this.#stats.untrack(containerId);
    // 409: a removal is already in progress, which is what was asked for. `v`: the anonymous
    // volumes of an image's VOLUME go with the container (else each generation leaves one).
    await this.#guard(() => tolerating([404, 409], () => this.#remove(containerId)));
    this.#releaseSandbox(containerId);
  }

  /**
   * A sandbox of this worker died. A container still in it has lost its network (its
   * interface goes with the sandbox): it is stopped, so its task's restart policy brings it
   * back with a network, as the kubelet restarts a pod whose sandbox changed.
   */
  #sandboxDied(id: string): void {
    this.#pool?.died(id);
    for (const [containerId, sandbox] of this.#sandboxOf) {
      if (sandbox !== id) continue;
      this.#logger?.warn(
        { containerId, sandbox: id },
        "the network sandbox of a running container died: stopping the container, its network is gone",
      );
      void tolerating([304, 404, 409], () =>
        this.#timed(`the kill of container ${shortId(containerId)}`, (o) =>
          this.#docker.getContainer(containerId).kill(o),
        ),
      ).catch(() => undefined);
    }
  }

  /** Removes the network sandbox `containerId` joined, if any (in the background). */
  #releaseSandbox(containerId: string): void {
    const sandbox = this.#sandboxOf.get(containerId);
    if (sandbox === undefined) return;
    this.#sandboxOf.delete(containerId);
    this.#pool?.discard(sandbox);
  }

  removeAssignment(
    assignment: Pick<ContainerRequest, "taskId" | "generation" | "workerId">,
  ): Promise<void> {
    const { taskId, generation, workerId } = assignment;
    return this.#guard(async () => {
      const list = await this.#timed(`the listing of task ${taskId}'s containers`, (o) =>
        this.#docker.listContainers({
          all: true,
          filters: {
            label: [
              `${LABEL_TASK}=${taskId}`,
              `${LABEL_WORKER}=${workerId}`,
              `${LABEL_GENERATION}=${generation}`,
            ],
          },
          ...o,
        }),
      );
      for (const { Id, HostConfig } of list) {
        this.#logger?.warn(
          { containerId: Id, taskId, generation: Number(generation) },
          "removing the container of a start that was given up",
        );
        this.#stats.untrack(Id);
        await tolerating([404, 409], () => this.#remove(Id));
        this.#sandboxOf.delete(Id);
        const sandbox = sandboxOf(HostConfig?.NetworkMode);
        if (sandbox !== undefined) this.#pool?.discard(sandbox);
      }
    });
  }

  async inspect(containerId: string): Promise<ContainerInfo | undefined> {
    try {
      const inspect = await this.#inspect(this.#docker.getContainer(containerId));
      return containerInfo(inspect, this.#exits.oomKilled(inspect.Id));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      const absent = engineAbsence(error);
      if (absent) {
        this.#engineLost(absent.message);
        throw absent;
      }
      throw new DriverError(`cannot inspect ${containerId}: ${dockerMessage(error)}`, "runtime");
    }
  }

  stats(): readonly ContainerStats[] {
    return this.#stats.samples();
  }

  logs(
    containerId: string,
    options: { follow: boolean; tail: number; since?: Timestamp; signal: AbortSignal },
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
    const list = await this.#timed("the listing of this worker's containers", (o) =>
      this.#docker.listContainers({
        all: true,
        filters: { label: [`${LABEL_WORKER}=${workerId}`] },
        ...o,
      }),
    );
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
    const found = infos.filter((info): info is ContainerInfo => info !== undefined);
    if (this.#pool) {
      this.#sandboxExits ??= new ExitWatcher(
        this.#docker,
        (id) => this.#sandboxDied(id),
        this.#logger,
        undefined,
        this.#timeoutMs,
        undefined,
        `${LABEL_SANDBOX}=${workerId}`,
      );
      await this.#sandboxExits.subscribe();
      // Exited containers released theirs in #running: what the map holds, runs.
      await this.#pool.refresh(workerId, () => new Set(this.#sandboxOf.values()));
    }
    return found;
  }

  async close(): Promise<void> {
    this.#exits.close();
    this.#stats.close();
    this.#sandboxExits?.close();
    if (this.#pool) await Promise.race([this.#pool.close(), delay(CLOSE_FILL_MS)]);
  }
}

/**
 * The DriverError of a call that did not reach the engine ("engine-unavailable") or that it
 * did not answer in time ("engine-timeout"); undefined for any other failure.
 */
function engineAbsence(error: unknown): DriverError | undefined {
  if (isEngineAbsent(error)) return error;
  return !(error instanceof DriverError) && isUnreachable(error)
    ? engineUnavailable(error)
    : undefined;
}

/** A container id as `docker ps` shows it (12 characters); a name as it is. */
function shortId(id: string): string {
  return /^[0-9a-f]{64}$/.test(id) ? id.slice(0, 12) : id;
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
