import type { UnknownField } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import type { Task, TaskSpec } from "../gen/cube/v1/task_pb.js";
import { encodeSpec } from "./spec-codec.js";
import { Codec } from "./store-codec.js";
import { Bytes } from "./wire.js";

/*
 * protobuf-es encodes by reflection, about 10x slower than the hand codec the store
 * uses; answering a RunTasks of 5,000 or pushing thousands of assignments was mostly
 * that. A message's unknown fields are written verbatim, so a Task field can travel as
 * bytes the hand codec made: on the wire it is the same message, for any reader.
 * Binary only: a JSON reader drops unknown fields.
 */

const codec = new Codec();
/** A spec's encoding as field 2 of Task, made once per spec object (a task keeps its spec). */
const specFields = new WeakMap<TaskSpec, Uint8Array>();

/** Task's wire format, its spec encoded once per spec object. */
export function taskBytes(task: Task): Uint8Array {
  const rest = codec.taskRest(task);
  const spec = task.spec;
  if (!spec) return rest;
  let field = specFields.get(spec);
  if (!field) {
    field = new Bytes(256).field(2, encodeSpec(spec)).finish().slice();
    specFields.set(spec, field);
  }
  const out = new Uint8Array(field.length + rest.length);
  out.set(field, 0);
  out.set(rest, field.length);
  return out;
}

/**
 * Unknown fields that put `tasks` on the wire as the repeated (or singular) Task field
 * `fieldNo`: set them as a message's `$unknown` and leave the field itself empty.
 */
export function prewiredTasks(fieldNo: number, tasks: readonly Task[]): UnknownField[] {
  return tasks.map((task) => ({
    no: fieldNo,
    wireType: WireType.LengthDelimited,
    data: new Bytes(32).delimited(taskBytes(task)).finish(),
  }));
}

/** Whether a request's content type is a binary protobuf one (not JSON). */
export function isBinary(contentType: string | null): boolean {
  return !contentType?.includes("json");
}
