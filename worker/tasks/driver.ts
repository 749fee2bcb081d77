import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { PortBinding, TaskSpec } from "../../gen/cube/v1/task_pb.js";
import type { LogStream } from "../../gen/cube/v1/task_service_pb.js";

/** What a driver needs to start one task's container. */
export interface ContainerRequest {
  /** Task id (label cube.task). */
  readonly taskId: string;
  /** Assignment generation (label cube.generation). */
  readonly generation: bigint;
  /** Worker id (label cube.worker). */
  readonly workerId: string;
  /** What to run. */
  readonly spec: TaskSpec;
}

/** A container as a driver sees it. */
export interface ContainerInfo {
  readonly containerId: string;
  /** The container's name (without Docker's leading "/"), when the driver knows it. */
  readonly name?: string;
  /**
   * True when the container carries cube's labels but not the name cube gives a container
   * with those labels (`docker commit` of a cube container run under another name, a
   * hand-made look-alike): cube did not make it, so it never adopts nor removes it.
   */
  readonly foreign?: boolean;
  readonly taskId: string;
  readonly generation: bigint;
  readonly running: boolean;
  /** Set once the container has exited. */
  readonly exitCode?: number;
  /** Docker's words when it could not run the container (OOM killed, …). */
  readonly error?: string;
  readonly ports: PortBinding[];
  readonly startedAtMs?: number;
  readonly finishedAtMs?: number;
}

/** How a container ended. */
export interface ExitStatus {
  readonly exitCode: number;
  /** For people: "exit code 137 (killed)", "OOM killed". */
  readonly reason: string;
  readonly finishedAtMs: number;
}

/** Image pull progress. */
export interface PullProgress {
  readonly message: string;
  readonly currentBytes: bigint;
  readonly totalBytes: bigint;
}

/** One sample of a container's usage. */
export interface ContainerStats {
  readonly containerId: string;
  readonly cpuPercent: number;
  readonly memoryUsedBytes: bigint;
  readonly memoryLimitBytes: bigint;
  readonly timeMs: number;
}

/** One chunk of container output. */
export interface LogChunk {
  readonly stream: LogStream;
  readonly data: Uint8Array;
  /** When the container wrote it (the engine's stamp); none on the engine's own notes. */
  readonly time?: Timestamp;
}

/**
 * Error whose message is fit for people and whose `kind` says whose fault it is, so the
 * worker can report a task FAILED with a readable reason and keep serving.
 */
export class DriverError extends Error {
  constructor(
    message: string,
    readonly kind:
      | "image-not-found"
      | "port-taken"
      | "invalid-spec"
      | "runtime"
      /** The registry stopped sending: the pull was cancelled after the stall timeout. */
      | "pull-stalled"
      /** The container is no longer there (removed meanwhile). */
      | "container-gone"
      /** The engine could not be reached (restarting, crashed): not the task's fault, retried. */
      | "engine-unavailable"
      /**
       * The engine did not answer a call within the runtime request timeout (a hung dockerd):
       * the call was abandoned. Not the task's fault either: retried like "engine-unavailable".
       */
      | "engine-timeout",
  ) {
    super(message);
    this.name = "DriverError";
  }
}

/**
 * Whether `error` says the engine is away ("engine-unavailable") or hung ("engine-timeout"):
 * not the task's fault, so the work is retried once the engine answers, never reported FAILED.
 */
export function isEngineAbsent(error: unknown): error is DriverError {
  return (
    error instanceof DriverError &&
    (error.kind === "engine-unavailable" || error.kind === "engine-timeout")
  );
}

/**
 * A container runtime, as Nomad's task drivers: the worker's only way to touch
 * containers. The Docker driver is the real one; benchmarks use a hollow one.
 */
export interface Driver {
  /**
   * Makes `image` available locally, pulling it only when missing; reports progress. An
   * abort of `signal` cancels the pull (it rejects then).
   */
  pull(image: string, onProgress: (p: PullProgress) => void, signal?: AbortSignal): Promise<void>;
  /** Creates and starts the container; resolves with its id and actual port bindings. */
  start(request: ContainerRequest): Promise<ContainerInfo>;
  /** Resolves when the container exits (at once if it already has); seen through events, not polling. */
  wait(containerId: string): Promise<ExitStatus>;
  /** SIGTERM, then SIGKILL after `graceMs`. Resolves once it is stopped; a gone container is not an error. */
  stop(containerId: string, graceMs: number): Promise<void>;
  /** Removes the container; a gone container is not an error. */
  destroy(containerId: string): Promise<void>;
  /**
   * Removes whatever container the engine holds for one assignment, found by its labels, not
   * by id: for a start the worker gave up on (it timed out), whose container the engine may
   * have made after all. None is not an error. Optional: a driver whose calls cannot time
   * out (the benchmarks' hollow one) has none.
   */
  removeAssignment?(
    assignment: Pick<ContainerRequest, "taskId" | "generation" | "workerId">,
  ): Promise<void>;
  /** The container now, or undefined when it is gone. */
  inspect(containerId: string): Promise<ContainerInfo | undefined>;
  /** The latest usage sample of each running container of this worker (sampled in the background). */
  stats(): readonly ContainerStats[];
  /**
   * The container's output, each chunk stamped with the time it was written: the last
   * `tail` lines (0: all) of those written at or after `since` (undefined: all), then, with
   * `follow`, what it writes until it exits or `signal` aborts.
   */
  logs(
    containerId: string,
    options: { follow: boolean; tail: number; since?: Timestamp; signal: AbortSignal },
  ): AsyncIterable<LogChunk>;
  /** Every container labelled for `workerId`, running or not: what a restarted worker re-adopts. */
  recover(workerId: string): Promise<ContainerInfo[]>;
  /** Stops background work (event stream, stats); leaves containers alone. */
  close(): Promise<void>;
  /**
   * Resolves when the engine answers, rejects (with its words) when it does not. Optional:
   * a driver with no engine to lose (the benchmarks' hollow one) has none.
   */
  ping?(): Promise<void>;
  /**
   * Calls `listener` whenever the driver sees a sign that its engine went away (its event
   * stream broke, a call could not reach it), for the worker's engine monitor to check.
   */
  onEngineLost?(listener: (reason: string) => void): void;
  /**
   * Calls `listener` whenever one of this worker's containers starts (cube's own starts too):
   * the worker stops one that belongs to a task it has recorded as ended (`docker restart`,
   * `docker start` from outside), so an ended task never has a container running behind it.
   */
  onContainerStarted?(listener: (started: StartedContainer) => void): void;
}

/** A container start the engine reported, with the labels that name its task. */
export interface StartedContainer {
  readonly containerId: string;
  readonly taskId: string;
  readonly generation: bigint;
}
