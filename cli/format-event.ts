import { timestampMs } from "@bufbuild/protobuf/wkt";
import {
  DesiredState,
  HealthStatus,
  type TaskEvent,
  TaskEventType,
} from "../gen/cube/v1/task_pb.js";
import { printable } from "../lib/printable-text.js";
import { stateName } from "../lib/task-state.js";
import type { Colors } from "./colors.js";
import { shortId } from "./format-task.js";

/** Every event type's word, in the order of the enum (help texts list them from here). */
export const EVENT_TYPE_NAMES: Readonly<Record<number, string>> = {
  [TaskEventType.CREATED]: "created",
  [TaskEventType.STATE_CHANGED]: "state",
  [TaskEventType.DESIRED_CHANGED]: "desired",
  [TaskEventType.PROGRESS]: "progress",
  [TaskEventType.HEALTH_CHANGED]: "health",
  [TaskEventType.COPY_STOPPED]: "copy",
  [TaskEventType.DELETED]: "deleted",
};

/**
 * The short word for an event type: "created", "state", "desired", "progress", "health",
 * "copy" (a second copy found after a lost worker came back is stopped), "deleted" (garbage
 * collected: gone from the read APIs).
 */
export function eventTypeName(type: TaskEventType): string {
  return EVENT_TYPE_NAMES[type] ?? "unknown";
}

/**
 * What the event says, in words: its message, else what changed. Control and bidirectional
 * characters escaped (lib/printable-text.ts): the message may quote a worker, Docker or a
 * registry, and an older manager stored it as it came.
 */
export function eventSummary(event: TaskEvent): string {
  const task = event.task;
  let what = "";
  if (event.type === TaskEventType.HEALTH_CHANGED && task) {
    what = task.health === HealthStatus.HEALTHY ? "healthy" : "unhealthy";
  } else if (event.type === TaskEventType.DESIRED_CHANGED && task) {
    what = task.desiredState === DesiredState.STOPPED ? "stop requested" : "run requested";
  } else if (
    task &&
    event.type !== TaskEventType.PROGRESS &&
    event.type !== TaskEventType.COPY_STOPPED &&
    event.type !== TaskEventType.DELETED
  ) {
    what = stateName(task.state);
  }
  const words = event.message || (event.type === TaskEventType.STATE_CHANGED ? task?.reason : "");
  return printable([what, words === what ? "" : words].filter((s) => s).join(": "));
}

/**
 * One line of `cube events` (and of the history in `cube inspect`):
 * "2026-01-02T03:04:05.678Z  #12  state     3f2a9c01d4e5  web  RUNNING".
 */
export function eventLine(event: TaskEvent, colors: Colors, noTrunc = false): string {
  const time = event.time ? new Date(timestampMs(event.time)).toISOString() : "-";
  const id = printable(shortId(event.task?.id ?? "", noTrunc));
  const name = printable(event.task?.spec?.name ?? "");
  return [
    colors.dim(time),
    colors.dim(`#${event.revision}`),
    eventTypeName(event.type).padEnd(8),
    id,
    name,
    eventSummary(event),
  ]
    .filter((s) => s !== "")
    .join("  ");
}
