/**
 * The reason a person reads when a task stays PENDING, built from the rejection counts of
 * candidate selection: "0/3 workers fit: 2 lack 2 GiB memory, 1 is DOWN".
 */
import {
  AVOIDED,
  CONSTRAINT_PREFIX,
  LACK_PREFIX,
  NOT_READY_PREFIX,
  PORT_PREFIX,
} from "./candidates.js";
import type { TaskRequest } from "./types.js";

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"] as const;

/** Bytes in binary units, at most two decimals: 2147483648n → "2 GiB", 1536n → "1.5 KiB". */
export function formatBytes(bytes: bigint): string {
  let unit = 0;
  while (unit < UNITS.length - 1 && bytes >= 1024n ** BigInt(unit + 1)) unit++;
  let value = Number(bytes) / 1024 ** unit;
  // 1023.999 MiB would print as "1024 MiB": carry into the next unit instead.
  if (Number(value.toFixed(2)) >= 1024 && unit < UNITS.length - 1) {
    unit++;
    value /= 1024;
  }
  return `${Number(value.toFixed(2))} ${UNITS[unit]}`;
}

/** Cores as people say them: 1 → "1 cpu core", 0.5 → "0.5 cpu cores". */
export function formatCores(cores: number): string {
  const value = Number(cores.toFixed(3));
  return `${value} cpu ${value === 1 ? "core" : "cores"}`;
}

/** "a", "a and b", "a, b and c". */
function list(items: readonly string[]): string {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

/** The phrase of one rejection key after its count, agreeing with it: "lacks 2 GiB memory". */
function phrase(key: string, count: number, task: TaskRequest): string {
  const one = count === 1;
  if (key.startsWith(NOT_READY_PREFIX)) {
    return `${one ? "is" : "are"} ${key.slice(NOT_READY_PREFIX.length)}`;
  }
  if (key === AVOIDED) return `${one ? "is" : "are"} excluded for this task`;
  if (key.startsWith(CONSTRAINT_PREFIX)) {
    return `${one ? "does" : "do"} not match ${key.slice(CONSTRAINT_PREFIX.length)}`;
  }
  if (key.startsWith(PORT_PREFIX)) {
    const ports = key.slice(PORT_PREFIX.length);
    return `already ${one ? "holds" : "hold"} host ${ports.includes(",") ? "ports" : "port"} ${ports}`;
  }
  if (key.startsWith(LACK_PREFIX)) {
    const want = task.resources;
    const amounts = key
      .slice(LACK_PREFIX.length)
      .split("+")
      .map((dim) => {
        if (dim === "cpu") return formatCores(want.cpu);
        if (dim === "memory") return `${formatBytes(want.memoryBytes)} memory`;
        return `${formatBytes(want.diskBytes)} disk`;
      });
    return `${one ? "lacks" : "lack"} ${list(amounts)}`;
  }
  return `${one ? "is" : "are"} rejected (${key})`;
}

/** Shortfalls first (what a person can act on), then exclusions and constraints, then node states. */
function rank(key: string): number {
  if (key.startsWith(LACK_PREFIX)) return 0;
  if (key === AVOIDED || key.startsWith(CONSTRAINT_PREFIX) || key.startsWith(PORT_PREFIX)) {
    return 1;
  }
  return 2;
}

/**
 * "0/N workers fit: …" with one part per rejection key, most frequent first (ties:
 * shortfalls, then exclusions, then states, then alphabetically), or "no workers
 * registered" when there are no nodes at all. The amounts are the task's requests, so
 * "2 lack 2 GiB memory" reads as "2 workers do not have 2 GiB of memory free".
 */
export function pendingReason(
  task: TaskRequest,
  rejected: ReadonlyMap<string, number>,
  total: number,
): string {
  if (total === 0) return "no workers registered";
  const parts = [...rejected]
    .sort(([a, m], [b, n]) => n - m || rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, count]) => `${count} ${phrase(key, count, task)}`);
  return `0/${total} workers fit: ${parts.join(", ")}`;
}
