import type { UnknownField } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import type { Task } from "../gen/cube/v1/task_pb.js";
import { delimitedTask, taskRest } from "../lib/task-codec.js";
import { Bytes } from "../lib/wire.js";

/*
 * protobuf-es encodes by reflection, about 10x slower than the hand codec
 * (lib/task-codec.ts); answering a RunTasks of 5,000 or pushing thousands of assignments was mostly
 * that. A message's unknown fields are written verbatim, so a Task field can travel as
 * bytes the hand codec made: on the wire it is the same message, for any reader.
 * Binary only: a JSON reader drops unknown fields.
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
  if (tasks.length === 0) return [];
  // One unknown field carries them all: protobuf-es writes the first tag, then the data
  // as is, so the data holds the first task and then every other one with its own tag.
  // (A field each cost four objects a task: 20,000 for one RunTasks answer.)
  const out = new Bytes(tasks.length * (withSpec ? 256 : 96));
  const tag = (fieldNo << 3) | WireType.LengthDelimited;
  tasks.forEach((task, i) => {
    if (i > 0) out.varint(tag);
    if (withSpec) delimitedTask(out, task);
    else out.delimited(taskRest(task));
  });
  return [{ no: fieldNo, wireType: WireType.LengthDelimited, data: out.finish() }];
}

/** Whether a request's content type is a binary protobuf one (not JSON). */
export function isBinary(contentType: string | null): boolean {
  return !contentType?.includes("json");
}
