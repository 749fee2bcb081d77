import type { Duration } from "@bufbuild/protobuf/wkt";
import type {
  HealthCheck,
  PortBinding,
  PortMapping,
  Resources,
  RestartPolicy,
  TaskSpec,
} from "../gen/cube/v1/task_pb.js";
import { Bytes, Reader } from "./wire.js";

/*
 * TaskSpec's protobuf wire format by hand: every RunTask encodes one spec and every load
 * decodes one per distinct spec, and the reflective toBinary/fromBinary take ~10 µs a spec.
 * test/manager-store.test.ts pins the field numbers and checks both against fromBinary.
 */

/** TaskSpec's wire format (what toBinary writes, field for field). */
export function encodeSpec(spec: TaskSpec): Uint8Array {
  const out = new Bytes(256).string(1, spec.name).string(2, spec.image);
  for (const c of spec.command) out.stringAlways(3, c);
  for (const a of spec.args) out.stringAlways(4, a);
  for (const [k, v] of Object.entries(spec.env)) out.field(5, entry(k, v));
  for (const p of spec.ports) out.field(6, encodePort(p));
  const r = spec.resources;
  if (r) {
    out.field(
      7,
      new Bytes(32).double(1, r.cpu).uint(2, r.memoryBytes).uint(3, r.diskBytes).finish(),
    );
  }
  const rp = spec.restartPolicy;
  if (rp) {
    out.field(
      8,
      new Bytes(32)
        .uint(1, rp.mode)
        .uint(2, rp.maxRestarts)
        .duration(3, rp.backoff)
        .duration(4, rp.maxBackoff)
        .finish(),
    );
  }
  const h = spec.healthCheck;
  if (h) {
    out.field(
      9,
      new Bytes(64)
        .string(1, h.path)
        .uint(2, h.port)
        .duration(3, h.interval)
        .duration(4, h.timeout)
        .uint(5, h.failureThreshold)
        .finish(),
    );
  }
  for (const [k, v] of Object.entries(spec.labels)) out.field(10, entry(k, v));
  return out.finish();
}

function entry(key: string, value: string): Uint8Array {
  return new Bytes(16 + key.length + value.length)
    .stringAlways(1, key)
    .stringAlways(2, value)
    .finish();
}

/** Decodes a TaskSpec; undefined on anything unexpected (the caller falls back to fromBinary). */
export function decodeSpec(bytes: Uint8Array): TaskSpec | undefined {
  const spec: TaskSpec = {
    $typeName: "cube.v1.TaskSpec",
    name: "",
    image: "",
    command: [],
    args: [],
    env: {},
    ports: [],
    resources: undefined,
    restartPolicy: undefined,
    healthCheck: undefined,
    labels: {},
  };
  const r = new Reader(bytes);
  while (!r.done) {
    const tag = r.small();
    if ((tag & 7) !== 2) return undefined;
    const chunk = r.delimited();
    switch (tag >>> 3) {
      case 1:
        spec.name = r.text(chunk);
        break;
      case 2:
        spec.image = r.text(chunk);
        break;
      case 3:
        spec.command.push(r.text(chunk));
        break;
      case 4:
        spec.args.push(r.text(chunk));
        break;
      case 5:
      case 10: {
        const e = readEntry(chunk);
        if (!e) return undefined;
        (tag >>> 3 === 5 ? spec.env : spec.labels)[e[0]] = e[1];
        break;
      }
      case 6: {
        const p = readPort<PortMapping>(chunk, "cube.v1.PortMapping");
        if (!p) return undefined;
        spec.ports.push(p);
        break;
      }
      case 7:
        spec.resources = readResources(chunk);
        if (!spec.resources) return undefined;
        break;
      case 8:
        spec.restartPolicy = readRestartPolicy(chunk);
        if (!spec.restartPolicy) return undefined;
        break;
      case 9:
        spec.healthCheck = readHealthCheck(chunk);
        if (!spec.healthCheck) return undefined;
        break;
      default:
        return undefined;
    }
  }
  return spec;
}

function readEntry(bytes: Uint8Array): [string, string] | undefined {
  const r = new Reader(bytes);
  let key = "";
  let value = "";
  while (!r.done) {
    const tag = r.small();
    if (tag === ((1 << 3) | 2)) key = r.text(r.delimited());
    else if (tag === ((2 << 3) | 2)) value = r.text(r.delimited());
    else return undefined;
  }
  return [key, value];
}

/** Encodes a PortMapping or a PortBinding (same field numbers; see {@link readPort}). */
export function encodePort(p: PortMapping | PortBinding): Uint8Array {
  return new Bytes(32)
    .uint(1, p.containerPort)
    .uint(2, p.hostPort)
    .uint(3, p.protocol)
    .string(4, p.hostIp)
    .finish();
}

/**
 * Decodes a PortMapping or a PortBinding: the two messages share their field numbers and
 * types, and differ only in name.
 */
export function readPort<T extends PortMapping | PortBinding>(
  bytes: Uint8Array,
  typeName: T["$typeName"],
): T | undefined {
  const p = { $typeName: typeName, containerPort: 0, hostPort: 0, protocol: 0, hostIp: "" } as T;
  const r = new Reader(bytes);
  while (!r.done) {
    const tag = r.small();
    if (tag === 1 << 3) p.containerPort = r.small();
    else if (tag === 2 << 3) p.hostPort = r.small();
    else if (tag === 3 << 3) p.protocol = r.small();
    else if (tag === ((4 << 3) | 2)) p.hostIp = r.text(r.delimited());
    else return undefined;
  }
  return p;
}

function readResources(bytes: Uint8Array): Resources | undefined {
  const res: Resources = { $typeName: "cube.v1.Resources", cpu: 0, memoryBytes: 0n, diskBytes: 0n };
  const r = new Reader(bytes);
  while (!r.done) {
    const tag = r.small();
    if (tag === ((1 << 3) | 1)) res.cpu = r.double();
    else if (tag === 2 << 3) res.memoryBytes = r.varint();
    else if (tag === 3 << 3) res.diskBytes = r.varint();
    else return undefined;
  }
  return res;
}

function readDuration(bytes: Uint8Array): Duration | undefined {
  const d = Reader.secondsNanos(bytes);
  return d && { $typeName: "google.protobuf.Duration", ...d };
}

function readRestartPolicy(bytes: Uint8Array): RestartPolicy | undefined {
  const p: RestartPolicy = {
    $typeName: "cube.v1.RestartPolicy",
    mode: 0,
    maxRestarts: 0,
    backoff: undefined,
    maxBackoff: undefined,
  };
  const r = new Reader(bytes);
  while (!r.done) {
    const tag = r.small();
    if (tag === 1 << 3) p.mode = r.small();
    else if (tag === 2 << 3) p.maxRestarts = r.small();
    else if (tag === ((3 << 3) | 2)) {
      p.backoff = readDuration(r.delimited());
      if (!p.backoff) return undefined;
    } else if (tag === ((4 << 3) | 2)) {
      p.maxBackoff = readDuration(r.delimited());
      if (!p.maxBackoff) return undefined;
    } else return undefined;
  }
  return p;
}

function readHealthCheck(bytes: Uint8Array): HealthCheck | undefined {
  const h: HealthCheck = {
    $typeName: "cube.v1.HealthCheck",
    path: "",
    port: 0,
    interval: undefined,
    timeout: undefined,
    failureThreshold: 0,
  };
  const r = new Reader(bytes);
  while (!r.done) {
    const tag = r.small();
    if (tag === ((1 << 3) | 2)) h.path = r.text(r.delimited());
    else if (tag === 2 << 3) h.port = r.small();
    else if (tag === ((3 << 3) | 2)) {
      h.interval = readDuration(r.delimited());
      if (!h.interval) return undefined;
    } else if (tag === ((4 << 3) | 2)) {
      h.timeout = readDuration(r.delimited());
      if (!h.timeout) return undefined;
    } else if (tag === 5 << 3) h.failureThreshold = r.small();
    else return undefined;
  }
  return h;
}
