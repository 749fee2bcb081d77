/** How the dashboard writes cube's values for people: states, sizes, times. */
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { HealthStatus, type PortBinding, type Task, TaskState } from "../../gen/cube/v1/task_pb.js";
import { EngineStatus, type Worker, WorkerStatus } from "../../gen/cube/v1/worker_pb.js";

/** The task states a person filters by, in lifecycle order. */
export const STATES: readonly TaskState[] = [
  TaskState.PENDING,
  TaskState.SCHEDULED,
  TaskState.RUNNING,
  TaskState.COMPLETED,
  TaskState.FAILED,
  TaskState.UNKNOWN,
];

/** "RUNNING", "PENDING"… (the names cube ps prints). */
export function stateName(state: TaskState): string {
  return TaskState[state] ?? String(state);
}

/** The CSS class of a state's badge: one colour per state, as cube ps colours them. */
export function stateClass(state: TaskState): string {
  return `state state-${stateName(state).toLowerCase()}`;
}

/** A task's state with its health when it has a check: "RUNNING (healthy)". */
export function taskStateText(task: Task): string {
  const name = stateName(task.state);
  if (task.state !== TaskState.RUNNING || task.health === HealthStatus.UNSPECIFIED) return name;
  return `${name} (${task.health === HealthStatus.HEALTHY ? "healthy" : "unhealthy"})`;
}

/** "READY", "DISCONNECTED", "DOWN". */
export function workerStatusName(status: WorkerStatus): string {
  return WorkerStatus[status] ?? String(status);
}

/** Why the worker's container engine does not answer, or undefined while it does. */
export function engineDown(worker: Worker): string | undefined {
  const engine = worker.engine;
  return engine?.status === EngineStatus.DOWN ? engine.reason || "no answer" : undefined;
}

/** Milliseconds since the epoch of a Timestamp, or undefined when unset. */
export function ms(ts: Timestamp | undefined): number | undefined {
  return ts ? timestampMs(ts) : undefined;
}

/** "3s", "4m", "2h", "5d": how long ago (or how long), as cube ps's AGE column. */
export function age(fromMs: number | undefined, nowMs = Date.now()): string {
  if (fromMs === undefined) return "";
  const s = Math.max(0, Math.floor((nowMs - fromMs) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** A local date and time with seconds, or "" when unset. */
export function clock(ts: Timestamp | undefined): string {
  const t = ms(ts);
  return t === undefined ? "" : new Date(t).toLocaleString(undefined, { hour12: false });
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** 1536 → "1.5 KiB"; bigints (uint64 fields) too. */
export function bytes(n: bigint | number): string {
  let v = Number(n);
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v >= 10 || u === 0 ? Math.round(v) : v.toFixed(1)} ${UNITS[u]}`;
}

/** 0.5 → "0.5", 2 → "2": cores without trailing zeros. */
export function cores(n: number): string {
  return String(Math.round(n * 100) / 100);
}

/** "127.0.0.1:8080->80/tcp", as docker ps and cube ps write published ports. */
export function ports(bindings: readonly PortBinding[]): string {
  return bindings
    .map(
      (p) =>
        `${p.hostIp || "127.0.0.1"}:${p.hostPort}->${p.containerPort}/${p.protocol === 2 ? "udp" : "tcp"}`,
    )
    .join(", ");
}

/** The first 12 characters of an id, as cube ps shows it. */
export function shortId(id: string): string {
  return id.length > 12 ? id.slice(0, 12) : id;
}

/** part / whole in percent, 0 when the whole is 0 (a worker without declared capacity). */
export function percent(part: number | bigint, whole: number | bigint): number {
  const w = Number(whole);
  return w > 0 ? Math.min(100, (Number(part) / w) * 100) : 0;
}
