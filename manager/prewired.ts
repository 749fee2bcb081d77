import type { UnknownField } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import type { Task } from "../gen/cube/v1/task_pb.js";
import { delimitedTask, taskRest } from "../lib/task-codec.js";
import { Bytes, Reader } from "../lib/wire.js";

/*
 * protobuf-es encodes by reflection, about 10x slower than the hand codec
 * (lib/task-codec.ts); answering a RunTasks of 5,000 was mostly that. A message's unknown
 * fields are written verbatim, so fields can travel as bytes a hand codec made: on the wire
 * it is the same message, for any reader. Binary only: a JSON reader drops unknown fields.
 * (The worker stream's messages go the same way: worker-wire.ts.)
 */

/**
 * Unknown fields that put `tasks` on the wire as the repeated (or singular) Task field
 * `fieldNo`: set them as a message's `$unknown` and leave the field itself empty. Without
 * `withSpec`, each task goes without its spec (TaskView BASIC).
 */
export function prewiredTasks(
  fieldNo: number,
  tasks: readonly Task[],
  withSpec = true,
): UnknownField[] {
  const out = new Bytes(tasks.length * (withSpec ? 256 : 96));
  const tag = (fieldNo << 3) | WireType.LengthDelimited;
  for (const task of tasks) {
    out.varint(tag);
    if (withSpec) delimitedTask(out, task);
    else out.delimited(taskRest(task));
  }
  return asUnknown(out.finish());
}

/**
 * Message bytes as unknown fields to set as a message's `$unknown`: one field, the first
 * tag, with everything after it as its data. protobuf-es writes the tag, then the data as
 * is: the same bytes, however many fields follow (one field each would cost four objects
 * a field: 20,000 for one RunTasks answer).
 */
export function asUnknown(bytes: Uint8Array): UnknownField[] {
  if (bytes.length === 0) return [];
  const reader = new Reader(bytes);
  const tag = reader.small();
  return [{ no: tag >>> 3, wireType: tag & 7, data: bytes.subarray(reader.pos) }];
}

/** Whether a request's content type is a binary protobuf one (not JSON). */
export function isBinary(contentType: string | null): boolean {
  return !contentType?.includes("json");
}
