import type { Task, TaskSpec } from "../gen/cube/v1/task_pb.js";
import { encodePort, encodeSpec } from "./spec-codec.js";
import { Bytes } from "./wire.js";

/*
 * Task's protobuf wire format by hand, about 10x faster than the reflective toBinary:
 * the manager writes every task snapshot to its store, into RunTasks answers and into
 * assignments, the worker into its own store. Snapshots are immutable (a change makes a
 * new object), so each is encoded once whoever asks; a spec never changes, so its
 * encoding is shared by every snapshot of its task. test/manager-store.test.ts pins the
 * field numbers and checks the bytes against fromBinary.
 */

/**
 * Where a snapshot keeps its encoded rest: a non-enumerable symbol property, which object
 * spread (how a change makes the next snapshot), JSON and protobuf-es all skip, so the
 * next snapshot never inherits it. Not a WeakMap: with an entry for every snapshot, each
 * young-generation collection spent ~5x longer on the weak table than on the objects
 * themselves (100+ ms pauses every few thousand placements).
 */
const REST = Symbol("cube.taskRest");
type CachedRest = { [REST]?: Uint8Array };
/** Where taskRest writes before copying out: one buffer, not one per encoding. */
const scratch = new Bytes(1024);
const specFields = new WeakMap<TaskSpec, Uint8Array>();

/** The task without its spec: Task's wire format, every field but 2. */
export function taskRest(task: Task): Uint8Array {
  let bytes = (task as CachedRest)[REST];
  if (bytes) return bytes;
  const out = scratch
    .reset()
    .string(1, task.id)
    .uint(3, task.desiredState)
    .uint(4, task.state)
    .string(5, task.workerId)
    .string(6, task.containerId);
  for (const p of task.ports) out.field(7, encodePort(p));
  // optional int32: present even when 0; negative values are sign-extended varints.
  if (task.exitCode !== undefined) out.varint(8 << 3).varint(task.exitCode);
  bytes = out
    .uint(9, task.restartCount)
    .string(10, task.reason)
    .uint(11, task.revision)
    .uint(12, task.health)
    .timestamp(13, task.createdAt)
    .timestamp(14, task.scheduledAt)
    .timestamp(15, task.startedAt)
    .timestamp(16, task.finishedAt)
    .uint(17, task.generation)
    // Kept as long as the snapshot, in a slice of Node's pool cut to its size (its own
    // ArrayBuffer would cost more than the bytes).
    .copy();
  // A snapshot someone froze is encoded each time instead.
  if (Object.isExtensible(task)) Object.defineProperty(task, REST, { value: bytes });
  return bytes;
}

/** A spec as field 2 of Task, encoded once per spec object. */
export function specField(spec: TaskSpec): Uint8Array {
  let field = specFields.get(spec);
  if (!field) {
    field = new Bytes(256).field(2, encodeSpec(spec)).finish();
    specFields.set(spec, field);
  }
  return field;
}

/** Records the encoding of a spec read back from storage, so it is not encoded again. */
export function knownSpecField(spec: TaskSpec, field: Uint8Array): void {
  specFields.set(spec, field);
}

/**
 * The whole task written into `out` as a length-delimited value (a repeated field's element,
 * a record), spec field and rest copied in directly rather than joined first.
 */
export function delimitedTask(out: Bytes, task: Task, rest = taskRest(task)): Bytes {
  const field = task.spec ? specField(task.spec) : undefined;
  out.varint((field?.length ?? 0) + rest.length);
  if (field) out.raw(field);
  return out.raw(rest);
}

/** The whole task: its spec field first, then the rest (protobuf allows any field order). */
export function taskBytes(task: Task, rest = taskRest(task)): Uint8Array {
  if (!task.spec) return rest;
  const field = specField(task.spec);
  const out = new Uint8Array(field.length + rest.length);
  out.set(field, 0);
  out.set(rest, field.length);
  return out;
}
