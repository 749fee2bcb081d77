import { timestampMs } from "@bufbuild/protobuf/wkt";
import { HealthStatus, type Task, TaskState } from "../gen/cube/v1/task_pb.js";
import { formatAge } from "../lib/parse-duration.js";
import { printable } from "../lib/printable-text.js";
import { stateName } from "../lib/task-state.js";
import type { Colors } from "./colors.js";
import { formatPort } from "./parse-port.js";

/** Columns of `cube ps`. */
export const TASK_HEAD = ["ID", "NAME", "STATE", "WORKER", "IMAGE", "PORTS", "RESTARTS", "AGE"];

/** Typical widths of the {@link TASK_HEAD} columns, for rows printed one at a time. */
export const TASK_WIDTHS = [12, 8, 17, 10, 16, 22, 8, 5];

/** How ids are shortened in tables (as `docker ps` shows 12 hex digits). */
export const SHORT_ID_LENGTH = 12;

/** An id cut to {@link SHORT_ID_LENGTH} characters unless `full`. */
export function shortId(id: string, full = false): string {
  return full ? id : id.slice(0, SHORT_ID_LENGTH);
}

/** What {@link taskRow} needs besides the task. */
export interface TaskRowContext {
  /** Now, in ms since the epoch (passed in, so rows are testable). */
  now: number;
  /** Worker names by id, for the WORKER column; unknown ids are shown shortened. */
  workerNames?: ReadonlyMap<string, string>;
  colors: Colors;
  /** Show ids in full. */
  noTrunc?: boolean;
}

/**
 * The STATE cell: the state, "(healthy)"/"(unhealthy)" when checked, and for an UNKNOWN task
 * how long ago contact with its worker was lost (given `now`), coloured if enabled.
 */
export function stateLabel(task: Task, colors: Colors, now?: number): string {
  const name = stateName(task.state);
  const paint =
    {
      [TaskState.PENDING]: colors.yellow,
      [TaskState.SCHEDULED]: colors.cyan,
      [TaskState.RUNNING]: colors.green,
      [TaskState.COMPLETED]: colors.dim,
      [TaskState.FAILED]: colors.red,
      [TaskState.UNKNOWN]: colors.magenta,
    }[task.state as number] ?? ((s: string) => s);
  let health = "";
  if (task.state === TaskState.RUNNING && task.health === HealthStatus.HEALTHY) {
    health = ` ${colors.green("(healthy)")}`;
  } else if (task.state === TaskState.RUNNING && task.health === HealthStatus.UNHEALTHY) {
    health = ` ${colors.red("(unhealthy)")}`;
  } else if (task.state === TaskState.UNKNOWN) {
    const lost = task.lostContactAt ? timestampMs(task.lostContactAt) : undefined;
    const ago = lost !== undefined && now !== undefined ? ` ${formatAge(now - lost)} ago` : "";
    health = ` ${colors.dim(`(lost contact${ago})`)}`;
  }
  return `${paint(name)}${health}`;
}

/**
 * The PORTS cell: the published ports while it runs, the requested ones before, and
 * nothing once it has ended (its ports are free again). The host addresses of published
 * ports are a worker's words: control and bidirectional characters escaped.
 */
export function portsLabel(task: Task): string {
  if (task.state === TaskState.COMPLETED || task.state === TaskState.FAILED) return "";
  const ports = task.ports.length > 0 ? task.ports : (task.spec?.ports ?? []);
  return printable(ports.map(formatPort).join(", "));
}

/** The worker's name for a table, or its id shortened (control and bidirectional characters escaped). */
export function workerLabel(id: string, names?: ReadonlyMap<string, string>, full = false): string {
  if (id === "") return "";
  return printable(names?.get(id) ?? shortId(id, full));
}

/**
 * One `cube ps` row, in the order of {@link TASK_HEAD}. Text from the manager has its control
 * and bidirectional characters escaped (lib/printable-text.ts) before any colour is added:
 * what an older manager stored as it came must not reach the terminal as an instruction.
 */
export function taskRow(task: Task, ctx: TaskRowContext): string[] {
  const created = task.createdAt ? timestampMs(task.createdAt) : ctx.now;
  return [
    printable(shortId(task.id, ctx.noTrunc)),
    printable(task.spec?.name ?? ""),
    stateLabel(task, ctx.colors, ctx.now),
    workerLabel(task.workerId, ctx.workerNames, ctx.noTrunc),
    printable(task.spec?.image ?? ""),
    portsLabel(task),
    String(task.restartCount),
    formatAge(ctx.now - created),
  ];
}
