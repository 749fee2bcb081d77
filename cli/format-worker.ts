import { timestampMs } from "@bufbuild/protobuf/wkt";
import { EngineStatus, type Worker, WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { formatAge } from "../lib/parse-duration.js";
import { printable } from "../lib/printable-text.js";
import type { Colors } from "./colors.js";
import { shortId } from "./format-task.js";
import { formatSize } from "./parse-size.js";

/** Columns of `cube nodes`. */
export const WORKER_HEAD = [
  "NAME",
  "ID",
  "STATUS",
  "CPU",
  "MEMORY",
  "DISK",
  "TASKS",
  "AGENT UP",
  "LAST SEEN",
];

/** Typical widths of the {@link WORKER_HEAD} columns, for rows printed one at a time. */
export const WORKER_WIDTHS = [10, 12, 12, 7, 14, 12, 5, 8, 9];

/**
 * The STATUS cell, coloured if enabled: READY green, DISCONNECTED yellow, DOWN red, with how
 * long when `downForMs` says ("DOWN 3h": the manager removes it at --node-gc-after); with
 * ", engine down" in red when the worker said its container engine does not answer.
 */
export function workerStatusLabel(
  status: WorkerStatus,
  colors: Colors,
  engine = EngineStatus.UNSPECIFIED,
  downForMs?: number,
): string {
  if (status === WorkerStatus.DOWN && downForMs !== undefined) {
    return colors.red(`DOWN ${formatAge(downForMs)}`);
  }
  const label = statusWord(status, colors);
  return engine === EngineStatus.DOWN && status !== WorkerStatus.DOWN
    ? `${label}${colors.red(", engine down")}`
    : label;
}

function statusWord(status: WorkerStatus, colors: Colors): string {
  switch (status) {
    case WorkerStatus.READY:
      return colors.green("READY");
    case WorkerStatus.DISCONNECTED:
      return colors.yellow("DISCONNECTED");
    case WorkerStatus.DOWN:
      return colors.red("DOWN");
    default:
      return "UNKNOWN";
  }
}

function cores(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2).replace(/0+$/, "");
}

/**
 * One `cube nodes` row. CPU, MEMORY and DISK read "allocated/capacity": what the
 * scheduler counts, not what the machine happens to use right now. AGENT UP is how long the
 * worker's agent process has run (its `agent_started_at`): a short one next to long-running
 * tasks is an agent that restarted and kept its containers. "-" when the worker is not
 * connected or did not say. Its name and id have their control and bidirectional characters
 * escaped (lib/printable-text.ts), as a manager older than that check may hold them.
 */
export function workerRow(
  worker: Worker,
  ctx: { now: number; colors: Colors; noTrunc?: boolean },
): string[] {
  const cap = worker.capacity;
  const alloc = worker.allocated;
  const seen = worker.lastHeartbeat ? timestampMs(worker.lastHeartbeat) : undefined;
  const down = worker.downSince ? ctx.now - timestampMs(worker.downSince) : undefined;
  return [
    printable(worker.name),
    printable(shortId(worker.id, ctx.noTrunc)),
    workerStatusLabel(worker.status, ctx.colors, worker.engine?.status, down),
    `${cores(alloc?.cpu ?? 0)}/${cores(cap?.cpu ?? 0)}`,
    `${formatSize(alloc?.memoryBytes ?? 0n)}/${formatSize(cap?.memoryBytes ?? 0n)}`,
    `${formatSize(alloc?.diskBytes ?? 0n)}/${formatSize(cap?.diskBytes ?? 0n)}`,
    String(worker.taskCount),
    agentUp(worker, ctx.now),
    seen === undefined ? "never" : `${formatAge(ctx.now - seen)} ago`,
  ];
}

function agentUp(worker: Worker, now: number): string {
  if (worker.status !== WorkerStatus.READY || !worker.agentStartedAt) return "-";
  return formatAge(Math.max(0, now - timestampMs(worker.agentStartedAt)));
}
