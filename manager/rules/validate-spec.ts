import { isIP } from "node:net";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { Protocol, RestartMode, type TaskSpec } from "../../gen/cube/v1/task_pb.js";
import type { RunTaskRequest } from "../../gen/cube/v1/task_service_pb.js";
import { imageProblem } from "../../lib/image-ref.js";
import { hostPortKey } from "../../lib/ports.js";
import {
  BIDI_CHARACTERS as BIDI,
  CONTROL_CHARACTERS as CONTROL,
} from "../../lib/printable-text.js";
import { quote } from "../../lib/quote.js";
import { REDACTED } from "../../lib/redact.js";

/** Limits a task spec must keep; anything beyond is a mistake or an attack, never a real need. */
export const LIMITS = {
  /** Requests in one RunTasks call. */
  batchSize: 5000,
  idLength: 64,
  nameLength: 253,
  imageLength: 1024,
  argCount: 256,
  argLength: 16 * 1024,
  envCount: 256,
  envKeyLength: 256,
  envValueLength: 32 * 1024,
  labelCount: 64,
  labelKeyLength: 253,
  labelValueLength: 1024,
  portCount: 100,
  /** An IP address as text: 45 characters for the longest IPv6 form, room for a zone. */
  hostIpLength: 64,
  cpu: 1024,
  bytes: 2n ** 50n, // 1 PiB
  minMemoryBytes: 6n * 1024n * 1024n, // Docker refuses less
  minCpu: 0.01, // 10m: runc refuses a CFS quota below 1 ms a 100 ms period
  maxRestarts: 1000,
  durationMs: 24 * 3600 * 1000,
  /** The longest stop_timeout: a stop holds the task's queue on its worker that long. */
  stopTimeoutMs: 3600 * 1000,
  healthPathLength: 1024,
  failureThreshold: 100,
  /** The shortest health check interval. */
  healthIntervalMinMs: 100,
} as const;

const ID = /^[A-Za-z0-9._-]+$/;

function bad(field: string, message: string): never {
  throw new ConnectError(`${field}: ${message}`, Code.InvalidArgument);
}

/** Checks a client-chosen task id (empty: the manager picks one); INVALID_ARGUMENT "id: …". */
export function validateTaskId(id: string): void {
  if (id !== "" && (id.length > LIMITS.idLength || !ID.test(id))) {
    bad("id", `1-${LIMITS.idLength} letters, digits, '-', '_' or '.'`);
  }
}

/**
 * Checks a RunTask request and returns its spec, or throws INVALID_ARGUMENT whose message
 * starts with the field path ("spec.ports[1].container_port: ..."). Nothing is normalised:
 * the spec is stored as given, so an idempotent retry compares equal.
 */
export function validateRunTask(request: RunTaskRequest): TaskSpec {
  validateTaskId(request.id);
  const spec = request.spec;
  if (!spec) bad("spec", "required");
  checkText("spec.name", spec.name, LIMITS.nameLength);
  if (spec.image.trim() === "") bad("spec.image", "required");
  checkText("spec.image", spec.image, LIMITS.imageLength);
  if (/\s/.test(spec.image)) bad("spec.image", "must not contain spaces");
  const imageWrong = imageProblem(spec.image);
  if (imageWrong) bad("spec.image", `${quote(spec.image)}: ${imageWrong}`);
  list("spec.command", spec.command);
  list("spec.args", spec.args);
  checkMap("spec.env", spec.env, LIMITS.envCount, LIMITS.envKeyLength, LIMITS.envValueLength);
  for (const [key, value] of Object.entries(spec.env)) {
    if (key === "" || key.includes("=")) bad(`spec.env["${key}"]`, "a name, without '='");
    if (value.includes("\0")) bad(`spec.env["${key}"]`, NUL_PROBLEM);
  }
  checkMap(
    "spec.secret_env",
    spec.secretEnv,
    LIMITS.envCount,
    LIMITS.envKeyLength,
    LIMITS.envValueLength,
  );
  for (const key of Object.keys(spec.secretEnv)) {
    if (key === "" || key.includes("=")) {
      bad(`spec.secret_env["${key}"]`, "a name, without '='");
    }
    // Own keys only: `in` would find Object.prototype's (constructor, toString) in any map.
    if (Object.hasOwn(spec.env, key)) {
      bad(`spec.secret_env["${key}"]`, "is also in spec.env: give it once");
    }
    // Named, never quoted: the engine's own refusal would quote the value into the reason.
    if (spec.secretEnv[key]?.includes("\0")) bad(`spec.secret_env["${key}"]`, NUL_PROBLEM);
    // What every read API shows in place of a secret: a spec copied from `cube job status -o
    // json` or GetTask would otherwise replace the real value with the placeholder.
    if (spec.secretEnv[key] === REDACTED) {
      bad(
        `spec.secret_env["${key}"]`,
        `"${REDACTED}" is what cube shows in place of a secret value: give the value itself`,
      );
    }
  }
  checkMap(
    "spec.labels",
    spec.labels,
    LIMITS.labelCount,
    LIMITS.labelKeyLength,
    LIMITS.labelValueLength,
  );
  // Labels are shown and matched by people: no control or bidirectional characters in
  // values either (env values may hold anything: certificates, scripts).
  for (const [k, v] of Object.entries(spec.labels)) {
    checkText(`spec.labels["${k}"]`, v, LIMITS.labelValueLength);
  }
  // The manager's own labels on a job's replicas (manager/core/job-table.ts): a task that set
  // them would be counted as a replica of that job.
  for (const key of ["cube.job", "cube.job.version"]) {
    if (Object.hasOwn(spec.labels, key)) {
      bad(`spec.labels["${key}"]`, "set by the manager on the replicas of a job (cube job run)");
    }
  }
  ports(spec);
  resources(spec);
  restartPolicy(spec);
  healthCheck(spec);
  duration("spec.stop_timeout", spec.stopTimeout, LIMITS.stopTimeoutMs, "1h");
  return spec;
}

/** INVALID_ARGUMENT "field: …" unless `value` has at most `max` characters, none of them control or bidirectional-override ones. */
export function checkText(field: string, value: string, max: number): void {
  if (value.length > max) bad(field, `at most ${max} characters (got ${value.length})`);
  if (CONTROL.test(value)) bad(field, "must not contain control characters");
  if (BIDI.test(value)) bad(field, "must not contain bidirectional-override characters");
}

/** A process's arguments and environment are C strings: a NUL byte would end them early. */
const NUL_PROBLEM =
  "must not contain a NUL byte (a process's arguments and environment cannot hold one)";

function list(field: string, values: readonly string[]): void {
  if (values.length > LIMITS.argCount) bad(field, `at most ${LIMITS.argCount} entries`);
  values.forEach((v, i) => {
    if (v.length > LIMITS.argLength)
      bad(`${field}[${i}]`, `at most ${LIMITS.argLength} characters`);
    if (v.includes("\0")) bad(`${field}[${i}]`, NUL_PROBLEM);
  });
}

/** INVALID_ARGUMENT "field…: …" unless the map has at most `count` entries within the lengths, its keys free of control and bidirectional characters. */
export function checkMap(
  field: string,
  values: Record<string, string>,
  count: number,
  keyLength: number,
  valueLength: number,
): void {
  const entries = Object.entries(values);
  if (entries.length > count) bad(field, `at most ${count} entries (got ${entries.length})`);
  for (const [k, v] of entries) {
    if (k.length > keyLength)
      bad(`${field}["${k.slice(0, 32)}…"]`, `key over ${keyLength} characters`);
    if (CONTROL.test(k) || BIDI.test(k)) {
      bad(
        `${field}["${k.replace(/[^\x20-\x7e]/g, "?")}"]`,
        "key has control or bidirectional characters",
      );
    }
    if (v.length > valueLength) bad(`${field}["${k}"]`, `value over ${valueLength} characters`);
  }
}

function ports(spec: TaskSpec): void {
  if (spec.ports.length > LIMITS.portCount)
    bad("spec.ports", `at most ${LIMITS.portCount} entries`);
  const hostPorts = new Set<string>();
  spec.ports.forEach((p, i) => {
    const f = `spec.ports[${i}]`;
    if (p.containerPort < 1 || p.containerPort > 65535) bad(`${f}.container_port`, "1-65535");
    if (p.hostPort > 65535) bad(`${f}.host_port`, "0-65535 (0 lets Docker choose)");
    if (!(p.protocol in Protocol)) bad(`${f}.protocol`, `unknown value ${p.protocol}`);
    if (p.hostIp.length > LIMITS.hostIpLength) {
      bad(`${f}.host_ip`, `at most ${LIMITS.hostIpLength} characters (got ${p.hostIp.length})`);
    }
    if (p.hostIp !== "" && isIP(p.hostIp) === 0) {
      bad(`${f}.host_ip`, `${quote(p.hostIp)} is not an IP address`);
    }
    if (p.hostPort !== 0) {
      const port = hostPortKey(p);
      const key = `${p.hostIp || "127.0.0.1"}:${port}`;
      if (hostPorts.has(key)) bad(`${f}.host_port`, `${port} is used twice`);
      hostPorts.add(key);
    }
  });
}

function resources(spec: TaskSpec): void {
  const r = spec.resources;
  if (!r) return;
  if (!Number.isFinite(r.cpu) || r.cpu < 0 || r.cpu > LIMITS.cpu) {
    bad("spec.resources.cpu", `cores, 0-${LIMITS.cpu} (got ${r.cpu})`);
  }
  // As Kubernetes: a millicore is the finest step (Docker would take nano-cores, and a
  // scheduler adding up 1e-7 cores misleads more than it places).
  if (Math.abs(r.cpu * 1000 - Math.round(r.cpu * 1000)) > 1e-6) {
    bad("spec.resources.cpu", `cores in steps of 0.001, a millicore (got ${r.cpu})`);
  }
  if (r.cpu > 0 && r.cpu < LIMITS.minCpu) {
    bad("spec.resources.cpu", `at least 0.01 (10m) when set, Docker's minimum (got ${r.cpu})`);
  }
  if (r.memoryBytes > LIMITS.bytes) bad("spec.resources.memory_bytes", "at most 1 PiB");
  if (r.memoryBytes !== 0n && r.memoryBytes < LIMITS.minMemoryBytes) {
    bad("spec.resources.memory_bytes", "at least 6 MiB when set (Docker's minimum)");
  }
  if (r.diskBytes > LIMITS.bytes) bad("spec.resources.disk_bytes", "at most 1 PiB");
}

function duration(
  field: string,
  d: Duration | undefined,
  maxMs = LIMITS.durationMs,
  maxText = "24h",
): number {
  if (!d) return 0;
  if (d.seconds < 0n || d.nanos < 0 || d.nanos > 999_999_999) bad(field, "must not be negative");
  const ms = durationMs(d);
  if (ms > maxMs) bad(field, `at most ${maxText}`);
  return ms;
}

function restartPolicy(spec: TaskSpec): void {
  const p = spec.restartPolicy;
  if (!p) return;
  if (!(p.mode in RestartMode)) bad("spec.restart_policy.mode", `unknown value ${p.mode}`);
  if (p.maxRestarts > LIMITS.maxRestarts) {
    bad("spec.restart_policy.max_restarts", `at most ${LIMITS.maxRestarts}`);
  }
  const backoff = duration("spec.restart_policy.backoff", p.backoff);
  const max = duration("spec.restart_policy.max_backoff", p.maxBackoff);
  if (p.maxBackoff && max < backoff) {
    bad("spec.restart_policy.max_backoff", "must not be below backoff");
  }
}

function healthCheck(spec: TaskSpec): void {
  const h = spec.healthCheck;
  if (!h) return;
  if (!h.path.startsWith("/")) bad("spec.health_check.path", 'must start with "/"');
  checkText("spec.health_check.path", h.path, LIMITS.healthPathLength);
  if (/\s/.test(h.path)) bad("spec.health_check.path", "must not contain spaces");
  if (h.port > 65535) bad("spec.health_check.port", "0-65535");
  if (h.port === 0 && spec.ports.length === 0) {
    bad("spec.health_check.port", "the task publishes no port to check: add one to spec.ports");
  }
  if (h.port !== 0 && !spec.ports.some((p) => p.containerPort === h.port)) {
    bad("spec.health_check.port", `${h.port} is not a container port of spec.ports`);
  }
  // The check is HTTP: the port it checks (its own, else the first) must be published on TCP.
  const checked = h.port || spec.ports[0]?.containerPort;
  const tcp = (p: TaskSpec["ports"][number]) =>
    p.containerPort === checked && p.protocol !== Protocol.UDP;
  if (
    checked !== undefined &&
    spec.ports.some((p) => p.containerPort === checked) &&
    !spec.ports.some(tcp)
  ) {
    bad(
      "spec.health_check.port",
      `an HTTP health check needs a TCP port: ${checked} is published on UDP only`,
    );
  }
  const interval = duration("spec.health_check.interval", h.interval);
  // A check every microsecond is a busy loop on the worker and in the container.
  if (h.interval && interval < LIMITS.healthIntervalMinMs) {
    bad("spec.health_check.interval", `at least ${LIMITS.healthIntervalMinMs}ms (or unset: 1s)`);
  }
  duration("spec.health_check.timeout", h.timeout);
  duration("spec.health_check.start_period", h.startPeriod);
  if (h.failureThreshold > LIMITS.failureThreshold) {
    bad("spec.health_check.failure_threshold", `at most ${LIMITS.failureThreshold}`);
  }
}
