/**
 * Translation between cube's task spec and Docker's container JSON, both ways, kept
 * pure so it can be read and tested without an engine.
 */
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type Docker from "dockerode";
import { type PortBinding, PortBindingSchema, Protocol } from "../../gen/cube/v1/task_pb.js";
import { protocolName } from "../../lib/ports.js";
import { stopGraceMs } from "../../lib/stop-grace.js";
import { type ContainerInfo, type ContainerRequest, DriverError } from "../tasks/driver.js";

/** Label keys every cube container carries. */
export const LABEL_TASK = "cube.task";
export const LABEL_WORKER = "cube.worker";
export const LABEL_GENERATION = "cube.generation";
/** Prefix of the task spec's own labels, so they cannot clash with cube's. */
export const LABEL_SPEC_PREFIX = "cube.label.";

const NAME_SAFE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}$/;

/**
 * How tightly a worker confines the containers it runs. The defaults harden what Docker
 * gives by default; a worker's operator may relax them (`cube worker` flags), a client never:
 * nothing in a TaskSpec reaches these.
 */
export interface ContainerPolicy {
  /** no-new-privileges: setuid binaries cannot gain privileges. Default true. */
  readonly noNewPrivileges: boolean;
  /** Processes a container may hold (a fork bomb stops there); 0: no limit. Default 1024. */
  readonly pidsLimit: number;
  /** Capabilities dropped from Docker's default set. Default NET_RAW (raw sockets: spoofing, ARP tricks). */
  readonly dropCapabilities: readonly string[];
  /**
   * Registries images may come from ("127.0.0.1:5000", "docker.io", …); empty: any. A task
   * whose image is elsewhere fails with a reason that says so, before any pull.
   */
  readonly allowedRegistries: readonly string[];
}

/**
 * How Docker keeps a container's output: its json-file driver, rotated at 10 MB and at most
 * 5 files (50 MB a container), the kubelet's defaults (containerLogMaxSize 10Mi,
 * containerLogMaxFiles 5). Without it a chatty task fills the disk. The engine's log reader,
 * and so `cube logs`, reads across the rotated files.
 */
export const LOG_CONFIG: {
  readonly Type: string;
  readonly Config: Readonly<Record<string, string>>;
} = {
  Type: "json-file",
  Config: { "max-size": "10m", "max-file": "5" },
};

/** What a worker enforces unless its operator says otherwise. */
export const DEFAULT_POLICY: ContainerPolicy = {
  noNewPrivileges: true,
  pidsLimit: 1024,
  dropCapabilities: ["NET_RAW"],
  allowedRegistries: [],
};

/**
 * The registry an image reference names, as Docker resolves it: the first path component
 * when it looks like a host (has "." or ":", or is "localhost"), else Docker Hub.
 */
export function registryOf(image: string): string {
  const slash = image.indexOf("/");
  if (slash < 0) return "docker.io";
  const first = image.slice(0, slash);
  return first.includes(".") || first.includes(":") || first === "localhost" ? first : "docker.io";
}

/** Throws DriverError invalid-spec when `image` comes from a registry the policy does not allow. */
export function checkRegistry(image: string, policy: ContainerPolicy): void {
  if (policy.allowedRegistries.length === 0) return;
  const registry = registryOf(image);
  if (!policy.allowedRegistries.includes(registry)) {
    throw new DriverError(
      `image ${image}: registry ${registry} is not allowed on this worker (allowed: ${policy.allowedRegistries.join(", ")})`,
      "invalid-spec",
    );
  }
}

/**
 * The container's name: `cube-<task>-g<generation>-<worker prefix>`. Deterministic, so
 * a repeated start of the same assignment finds the container it made before; the
 * worker prefix keeps two workers on one engine (tests, dev clusters) from colliding on
 * tasks with equal ids. Ids Docker would refuse are sanitized and suffixed with a hash
 * so that distinct ids never share a name.
 */
export function containerName(taskId: string, generation: bigint, workerId: string): string {
  const task = NAME_SAFE.test(taskId)
    ? taskId
    : `${taskId.replace(/[^a-zA-Z0-9_.-]/g, "_").slice(0, 60)}-${hash(taskId)}`;
  const worker = workerId.replace(/[^a-zA-Z0-9]/g, "").slice(0, 8) || hash(workerId);
  return `cube-${task}-g${generation}-${worker}`;
}

function hash(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 8);
}

/**
 * Docker's create body for a request; throws DriverError invalid-spec for what Docker cannot
 * express. With `sandbox` (the id of a running network sandbox, worker/docker/sandbox-pool.ts;
 * only for a spec without ports) the container joins that sandbox's network namespace instead
 * of the engine making one for it.
 */
export function createOptions(
  request: ContainerRequest,
  policy: ContainerPolicy = DEFAULT_POLICY,
  sandbox?: string,
): Docker.ContainerCreateOptions {
  const { spec } = request;
  if (sandbox !== undefined && spec.ports.length > 0) {
    throw new DriverError("a task with published ports cannot join a network sandbox", "runtime");
  }
  if (spec.image === "") throw new DriverError("the task spec has no image", "invalid-spec");
  checkRegistry(spec.image, policy);
  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(spec.labels)) labels[LABEL_SPEC_PREFIX + key] = value;
  labels[LABEL_TASK] = request.taskId;
  labels[LABEL_WORKER] = request.workerId;
  labels[LABEL_GENERATION] = request.generation.toString();
  // A job's replica (the manager labels it cube.job): `docker ps --filter label=cube.job=web`.
  if (spec.labels["cube.job"]) labels["cube.job"] = spec.labels["cube.job"];

  const exposed: Record<string, object> = {};
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const port of spec.ports) {
    if (port.containerPort < 1 || port.containerPort > 65535) {
      throw new DriverError(
        `container port ${port.containerPort} is not in 1–65535`,
        "invalid-spec",
      );
    }
    const key = `${port.containerPort}/${protocolName(port.protocol)}`;
    exposed[key] = {};
    const binding = {
      HostIp: port.hostIp || "127.0.0.1",
      HostPort: port.hostPort === 0 ? "" : String(port.hostPort),
    };
    const existing = bindings[key];
    if (existing) existing.push(binding);
    else bindings[key] = [binding];
  }

  const resources = spec.resources;
  const hostConfig: Docker.HostConfig = {
    // An init as PID 1 forwards SIGTERM, so servers that ignore it as PID 1 still stop in ms.
    Init: true,
    PortBindings: bindings,
    LogConfig: { Type: LOG_CONFIG.Type, Config: { ...LOG_CONFIG.Config } },
  };
  if (sandbox !== undefined) hostConfig.NetworkMode = `container:${sandbox}`;
  if (policy.noNewPrivileges) hostConfig.SecurityOpt = ["no-new-privileges"];
  if (policy.pidsLimit > 0) hostConfig.PidsLimit = policy.pidsLimit;
  if (policy.dropCapabilities.length > 0) hostConfig.CapDrop = [...policy.dropCapabilities];
  if (resources && resources.cpu > 0) hostConfig.NanoCpus = Math.round(resources.cpu * 1e9);
  if (resources && resources.memoryBytes > 0n) {
    hostConfig.Memory = Number(resources.memoryBytes);
    // Memory and swap together capped at the memory: no swap, as Kubernetes runs pods (Docker's
    // default lets a container swap as much again, so it slows down instead of being OOM-killed).
    hostConfig.MemorySwap = hostConfig.Memory;
  }

  const options: Docker.ContainerCreateOptions = {
    name: containerName(request.taskId, request.generation, request.workerId),
    Image: spec.image,
    Env: Object.entries({ ...spec.env, ...spec.secretEnv }).map(
      ([key, value]) => `${key}=${value}`,
    ),
    Labels: labels,
    ExposedPorts: exposed,
    HostConfig: hostConfig,
  };
  if (spec.command.length > 0) options.Entrypoint = [...spec.command];
  if (spec.args.length > 0) options.Cmd = [...spec.args];
  // cube's own stops pass the grace each time; this is for `docker stop` by hand and for the
  // engine's own shutdown, which then give the task the time it asked for too.
  if (spec.stopTimeout) options.StopTimeout = Math.ceil(stopGraceMs(spec) / 1000);
  return options;
}

/** The ports Docker actually published, from an inspect's NetworkSettings.Ports. */
export function publishedPorts(
  ports: Record<string, { HostIp: string; HostPort: string }[] | null> | undefined,
): PortBinding[] {
  const result: PortBinding[] = [];
  for (const [key, hosts] of Object.entries(ports ?? {})) {
    const [port, proto] = key.split("/");
    for (const host of hosts ?? []) {
      // Docker 20.10 publishes on IPv6 too when HostIp is empty; one binding per port is enough.
      if (host.HostIp === "::" && result.some((b) => b.containerPort === Number(port))) continue;
      result.push(
        create(PortBindingSchema, {
          containerPort: Number(port),
          hostPort: Number(host.HostPort),
          protocol: proto === "udp" ? Protocol.UDP : Protocol.TCP,
          hostIp: host.HostIp,
        }),
      );
    }
  }
  return result;
}

/** Docker's zero time ("0001-01-01T00:00:00Z") means "never". */
function timeMs(text: string | undefined): number | undefined {
  if (!text || text.startsWith("0001-")) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * A ContainerInfo from `container.inspect()`. `oomEvent`: Docker's "oom" event was seen for
 * the container, which its State.OOMKilled misses when the OOM came after the exit.
 */
export function containerInfo(
  inspect: Docker.ContainerInspectInfo,
  oomEvent = false,
): ContainerInfo {
  const labels = inspect.Config.Labels ?? {};
  const state = inspect.State;
  const exited = !state.Running && (state.Status === "exited" || state.Status === "dead");
  const oom = oomEnded(state.ExitCode, state.OOMKilled || oomEvent);
  const error = (oom && "out of memory") || state.Error || undefined;
  const name = inspect.Name.replace(/^\//, "");
  const taskId = labels[LABEL_TASK] ?? "";
  const generation = parseGeneration(labels[LABEL_GENERATION]);
  const foreign = name !== containerName(taskId, generation, labels[LABEL_WORKER] ?? "");
  return {
    containerId: inspect.Id,
    name,
    ...(foreign ? { foreign } : {}),
    taskId,
    generation,
    running: state.Running,
    ...(exited ? { exitCode: state.ExitCode } : {}),
    ...(error ? { error } : {}),
    ports: publishedPorts(
      inspect.NetworkSettings.Ports as Record<
        string,
        { HostIp: string; HostPort: string }[] | null
      >,
    ),
    ...optional("startedAtMs", timeMs(state.StartedAt)),
    ...optional("finishedAtMs", timeMs(state.FinishedAt)),
  };
}

function optional<K extends string>(key: K, value: number | undefined) {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: number };
}

/** A cube.generation label's value; 0 when it is missing or not a number. */
export function parseGeneration(text: string | undefined): bigint {
  try {
    return text ? BigInt(text) : 0n;
  } catch {
    return 0n;
  }
}

const EXIT_MEANINGS: Record<number, string> = {
  126: "command not executable",
  127: "command not found",
  137: "killed",
};

/**
 * Whether a container ended for want of memory: Docker's OOMKilled says only that the kernel
 * killed some process of it (a child, say), so it counts only when the exit code is non-zero
 * too (137 when the main process was the one killed).
 */
function oomEnded(exitCode: number, oomKilled: boolean): boolean {
  return oomKilled && exitCode !== 0;
}

/**
 * For people: "exit code 3", "exit code 137 (killed)", "out of memory" (OOM-killed and a
 * non-zero exit: a main process that exits 0 after a child was OOM-killed succeeded).
 */
export function exitReason(exitCode: number, oomKilled: boolean): string {
  if (oomEnded(exitCode, oomKilled)) return "out of memory";
  const meaning = EXIT_MEANINGS[exitCode];
  return meaning ? `exit code ${exitCode} (${meaning})` : `exit code ${exitCode}`;
}
