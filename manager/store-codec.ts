import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import {
  type Task,
  type TaskEvent,
  TaskEventSchema,
  TaskSchema,
  type TaskSpec,
  TaskSpecSchema,
} from "../gen/cube/v1/task_pb.js";

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

/** A growable byte buffer for protobuf varints, strings and byte strings. */
export class Bytes {
  #buf: Buffer;
  #len = 0;

  constructor(size = 64) {
    // allocUnsafe takes small buffers from Node's pool: no zeroing, no fresh allocation.
    this.#buf = Buffer.allocUnsafe(size);
  }

  get length(): number {
    return this.#len;
  }

  #room(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + n));
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }

  /** An unsigned varint (numbers up to 2^53, or bigints up to 2^64; negatives as int64). */
  varint(value: number | bigint): this {
    this.#room(10);
    if (typeof value === "number" && value >= 0 && value < 0x80000000) {
      let v = value;
      while (v > 0x7f) {
        this.#buf[this.#len++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      this.#buf[this.#len++] = v;
      return this;
    }
    let v = BigInt.asUintN(64, BigInt(value));
    while (v > 0x7fn) {
      this.#buf[this.#len++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.#buf[this.#len++] = Number(v);
    return this;
  }

  raw(bytes: Uint8Array): this {
    this.#room(bytes.length);
    this.#buf.set(bytes, this.#len);
    this.#len += bytes.length;
    return this;
  }

  /** varint length, then the bytes. */
  delimited(bytes: Uint8Array): this {
    return this.varint(bytes.length).raw(bytes);
  }

  /** A length-delimited field: tag, length, bytes. */
  field(fieldNo: number, bytes: Uint8Array): this {
    return this.varint((fieldNo << 3) | 2).delimited(bytes);
  }

  /** A varint field, left out when zero (proto3 implicit presence). */
  uint(fieldNo: number, value: number | bigint): this {
    if (value === 0 || value === 0n) return this;
    return this.varint(fieldNo << 3).varint(value);
  }

  /** A string field, left out when empty. */
  string(fieldNo: number, value: string): this {
    if (value === "") return this;
    const n = Buffer.byteLength(value);
    this.varint((fieldNo << 3) | 2).varint(n);
    this.#room(n);
    this.#len += this.#buf.write(value, this.#len, "utf8");
    return this;
  }

  /** A Timestamp field, left out when unset. */
  timestamp(fieldNo: number, t: Timestamp | undefined): this {
    if (!t) return this;
    const inner = new Bytes(24).uint(1, t.seconds).uint(2, t.nanos).finish();
    return this.field(fieldNo, inner);
  }

  finish(): Uint8Array {
    return new Uint8Array(this.#buf.subarray(0, this.#len));
  }
}

/** Reads varints and delimited chunks from `buf`. */
export class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.buf[this.pos++];
      if (b === undefined) throw new Error("truncated varint");
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return result;
      shift += 7n;
    }
  }

  delimited(): Uint8Array {
    const len = Number(this.varint());
    const start = this.pos;
    this.pos += len;
    if (this.pos > this.buf.length) throw new Error("truncated record");
    return this.buf.subarray(start, this.pos);
  }
}

/**
 * Encodes the store's records. A task's spec never changes, so its encoding is cached per
 * task id; everything else is encoded by hand (the protobuf wire format of Task and
 * TaskEvent, which fromBinary reads back), about 10x faster than the reflective toBinary.
 * test/manager-store.test.ts checks both against the generated schema.
 */
export class Codec {
  readonly #specs = new Map<string, { spec: TaskSpec; field: Uint8Array }>();

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
    specs: Map<string, TaskSpec>,
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
    const field = new Bytes(256).field(2, toBinary(TaskSpecSchema, spec)).finish();
    this.#specs.set(taskId, { spec, field });
    return field;
  }

  #readTask(bytes: Uint8Array, specs: Map<string, TaskSpec>): Task {
    if (bytes[0] !== ((2 << 3) | 2)) return fromBinary(TaskSchema, bytes);
    const reader = new Reader(bytes);
    reader.pos = 1;
    const specBytes = reader.delimited();
    const key = Buffer.from(specBytes.buffer, specBytes.byteOffset, specBytes.length).toString(
      "latin1",
    );
    let spec = specs.get(key);
    if (!spec) {
      spec = fromBinary(TaskSpecSchema, specBytes);
      specs.set(key, spec);
    }
    const task = fromBinary(TaskSchema, bytes.subarray(reader.pos));
    task.spec = spec;
    this.#specs.set(task.id, { spec, field: bytes.slice(0, reader.pos) });
    return task;
  }
}
