import { fromBinary } from "@bufbuild/protobuf";
import {
  type PortBinding,
  type Task,
  type TaskEvent,
  TaskEventSchema,
  TaskSchema,
  type TaskSpec,
  TaskSpecSchema,
} from "../gen/cube/v1/task_pb.js";
import { decodeSpec, readPort } from "../lib/spec-codec.js";
import { delimitedTask, knownSpecField } from "../lib/task-codec.js";
import { readTimestamp } from "../lib/timestamp.js";
import { Bytes, Reader } from "../lib/wire.js";

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
 * Encodes the store's records through lib/task-codec.ts (a spec encoded once, a snapshot
 * once); everything is encoded by hand (the protobuf wire format of Task and
 * TaskEvent, which fromBinary reads back), about 10x faster than the reflective toBinary.
 * test/manager-store.test.ts checks both against the generated schema.
 */
export class Codec {
  /** Where task records are encoded before LevelDB copies them. */
  readonly #recordScratch = new Bytes(4096);
  /** Where events are encoded before they are copied into their blob. */
  readonly #scratch = new Bytes(1024);

  /**
   * A task record: the task, then the revisions of its events. Written in a buffer the next
   * call overwrites: the value is handed to LevelDB at once (a batch's put copies it,
   * synchronously).
   */
  taskRecord(task: Task, revisions: readonly bigint[], rest?: Uint8Array): Uint8Array {
    const out = delimitedTask(this.#recordScratch.reset(), task, rest);
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

  /**
   * Appends a TaskEvent whose task is `taskRest` (the task without its spec) to `out` as a
   * delimited record (an event blob's entry).
   */
  delimitedEvent(out: Bytes, event: TaskEvent, taskRest: Uint8Array | undefined): void {
    const bytes = this.#event(event, taskRest);
    out.varint(bytes.length).raw(bytes.finish());
  }

  #event(event: TaskEvent, taskRest: Uint8Array | undefined): Bytes {
    const out = this.#scratch
      .reset()
      .uint(1, event.revision)
      .uint(2, event.type)
      .timestamp(3, event.time);
    if (taskRest) out.field(4, taskRest);
    return out.string(5, event.message);
  }

  readEvent(bytes: Uint8Array): TaskEvent {
    return fromBinary(TaskEventSchema, bytes);
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
      // Written again later (the task changes): its spec field is already encoded.
      knownSpecField(shared.spec, shared.field);
    }
    const rest = bytes.subarray(reader.pos);
    const task = readTaskRest(rest) ?? fromBinary(TaskSchema, rest);
    task.spec = shared.spec;
    return task;
  }
}

/**
 * Decodes what lib/task-codec.ts taskRest writes, by hand (loading 100,000 tasks is dominated by
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
