import { fromBinary } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import {
  type PortBinding,
  type Task,
  type TaskEvent,
  TaskEventSchema,
  TaskSchema,
  type TaskSpec,
  TaskSpecSchema,
} from "../gen/cube/v1/task_pb.js";
import { decodeSpec, encodeSpec, readPort } from "./spec-codec.js";
import { Bytes, Reader } from "./wire.js";

/*
 * Value formats of the LevelDB store. Every message inside is standard protobuf encoding
 * (what toBinary writes, what fromBinary reads); the framing around them is the store's own.
 *
 *   task record  = varint(len) Task-bytes, then varint revisions of the task's events
 *   event blob   = (varint(len) TaskEvent-bytes)*, revisions contiguous from the key's first
 *
 * Task-bytes put the spec field first (encoded once per spec object) and the rest after;
 * protobuf allows fields in any order, so it is one valid Task message. An event's task is
 * stored without its spec (it never changes: readers fill it in from the task).
 */

/** A decoded spec and its encoded field, shared by the tasks whose specs are equal. */
export interface SharedSpec {
  readonly spec: TaskSpec;
  readonly field: Uint8Array;
}

/**
 * Encodes the store's records. A task's spec never changes, so its encoding is cached per
 * task id; everything else is encoded by hand (the protobuf wire format of Task and
 * TaskEvent, which fromBinary reads back), about 10x faster than the reflective toBinary.
 * test/manager-store.test.ts checks both against the generated schema.
 */
export class Codec {
  readonly #specs = new Map<string, SharedSpec>();

  /** The task without its spec: Task's wire format, every field but 2. */
  taskRest(task: Task): Uint8Array {
    const out = new Bytes(128)
      .string(1, task.id)
      .uint(3, task.desiredState)
      .uint(4, task.state)
      .string(5, task.workerId)
      .string(6, task.containerId);
    for (const p of task.ports) {
      const port = new Bytes(32)
        .uint(1, p.containerPort)
        .uint(2, p.hostPort)
        .uint(3, p.protocol)
        .string(4, p.hostIp)
        .finish();
      out.field(7, port);
    }
    // optional int32: present even when 0; negative values are sign-extended varints.
    if (task.exitCode !== undefined) out.varint(8 << 3).varint(task.exitCode);
    return out
      .uint(9, task.restartCount)
      .string(10, task.reason)
      .uint(11, task.revision)
      .uint(12, task.health)
      .timestamp(13, task.createdAt)
      .timestamp(14, task.scheduledAt)
      .timestamp(15, task.startedAt)
      .timestamp(16, task.finishedAt)
      .uint(17, task.generation)
      .finish();
  }

  /** The whole task: its spec field first (encoded once per task), then the rest. */
  task(task: Task, rest = this.taskRest(task)): Uint8Array {
    if (!task.spec) return rest;
    const field = this.#specField(task.id, task.spec);
    const out = new Uint8Array(field.length + rest.length);
    out.set(field, 0);
    out.set(rest, field.length);
    return out;
  }

  /** A task record: the task, then the revisions of its events. */
  taskRecord(task: Task, revisions: readonly bigint[], rest?: Uint8Array): Uint8Array {
    const out = new Bytes(256).delimited(this.task(task, rest));
    for (const r of revisions) out.varint(r);
    return out.finish();
  }

  /** Reads a task record, sharing equal specs through `specs` (replicas have equal specs). */
  readTaskRecord(
    value: Uint8Array,
    specs: Map<string, SharedSpec>,
  ): { task: Task; revisions: bigint[] } {
    const reader = new Reader(value);
    const bytes = reader.delimited();
    const revisions: bigint[] = [];
    while (!reader.done) revisions.push(reader.varint());
    return { task: this.#readTask(bytes, specs), revisions };
  }

  /** A TaskEvent whose task is `taskRest` (the task without its spec). */
  event(event: TaskEvent, taskRest: Uint8Array | undefined): Uint8Array {
    const out = new Bytes(64 + (taskRest?.length ?? 0))
      .uint(1, event.revision)
      .uint(2, event.type)
      .timestamp(3, event.time);
    if (taskRest) out.field(4, taskRest);
    return out.string(5, event.message).finish();
  }

  readEvent(bytes: Uint8Array): TaskEvent {
    return fromBinary(TaskEventSchema, bytes);
  }

  /** Forgets a task's cached spec (its record is gone). */
  forget(taskId: string): void {
    this.#specs.delete(taskId);
  }

  #specField(taskId: string, spec: TaskSpec): Uint8Array {
    const cached = this.#specs.get(taskId);
    if (cached?.spec === spec) return cached.field;
    const field = new Bytes(256).field(2, encodeSpec(spec)).finish().slice();
    this.#specs.set(taskId, { spec, field });
    return field;
  }

  #readTask(bytes: Uint8Array, specs: Map<string, SharedSpec>): Task {
    if (bytes[0] !== ((2 << 3) | 2)) return fromBinary(TaskSchema, bytes);
    const reader = new Reader(bytes);
    reader.pos = 1;
    const specBytes = reader.delimited();
    const key = Buffer.from(specBytes.buffer, specBytes.byteOffset, specBytes.length).toString(
      "latin1",
    );
    let shared = specs.get(key);
    if (!shared) {
      shared = {
        spec: decodeSpec(specBytes) ?? fromBinary(TaskSpecSchema, specBytes),
        field: bytes.subarray(0, reader.pos),
      };
      specs.set(key, shared);
    }
    const rest = bytes.subarray(reader.pos);
    const task = readTaskRest(rest) ?? fromBinary(TaskSchema, rest);
    task.spec = shared.spec;
    this.#specs.set(task.id, shared);
    return task;
  }
}

/**
 * Decodes what {@link Codec.taskRest} writes, by hand (loading 100,000 tasks is dominated by
 * this). Returns undefined on anything it does not know — a field from a newer version, an
 * unexpected wire type — and the caller falls back to fromBinary.
 */
export function readTaskRest(bytes: Uint8Array): Task | undefined {
  const task: Task = {
    $typeName: "cube.v1.Task",
    id: "",
    spec: undefined,
    desiredState: 0,
    state: 0,
    workerId: "",
    containerId: "",
    ports: [],
    exitCode: undefined,
    restartCount: 0,
    reason: "",
    revision: 0n,
    health: 0,
    createdAt: undefined,
    scheduledAt: undefined,
    startedAt: undefined,
    finishedAt: undefined,
    generation: 0n,
  };
  const r = new Reader(bytes);
  while (!r.done) {
    const tag = r.small();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (wire === 0) {
      if (field === 11) task.revision = r.varint();
      else if (field === 17) task.generation = r.varint();
      else if (field === 8) task.exitCode = Number(BigInt.asIntN(32, r.varint()));
      else {
        const v = r.small();
        if (field === 3) task.desiredState = v;
        else if (field === 4) task.state = v;
        else if (field === 9) task.restartCount = v;
        else if (field === 12) task.health = v;
        else return undefined;
      }
    } else if (wire === 2) {
      const chunk = r.delimited();
      if (field === 1) task.id = r.text(chunk);
      else if (field === 5) task.workerId = r.text(chunk);
      else if (field === 6) task.containerId = r.text(chunk);
      else if (field === 10) task.reason = r.text(chunk);
      else if (field === 7) {
        const port = readPort<PortBinding>(chunk, "cube.v1.PortBinding");
        if (!port) return undefined;
        task.ports.push(port);
      } else if (field >= 13 && field <= 16) {
        const ts = readTimestamp(chunk);
        if (!ts) return undefined;
        if (field === 13) task.createdAt = ts;
        else if (field === 14) task.scheduledAt = ts;
        else if (field === 15) task.startedAt = ts;
        else task.finishedAt = ts;
      } else return undefined;
    } else return undefined;
  }
  return task;
}

function readTimestamp(bytes: Uint8Array): Timestamp | undefined {
  const ts: Timestamp = { $typeName: "google.protobuf.Timestamp", seconds: 0n, nanos: 0 };
  const r = new Reader(bytes);
  while (!r.done) {
    const tag = r.small();
    if (tag === 1 << 3) ts.seconds = BigInt.asIntN(64, r.varint());
    else if (tag === 2 << 3) ts.nanos = r.small();
    else return undefined;
  }
  return ts;
}
