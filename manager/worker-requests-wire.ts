import { type DescService, fromBinary, type UnknownField } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { PortBinding } from "../gen/cube/v1/task_pb.js";
import {
  type AssignmentAck,
  AssignmentAckSchema,
  type ConnectRequest,
  ConnectRequestSchema,
  type TaskUpdate,
  TaskUpdateSchema,
} from "../gen/cube/v1/worker_service_pb.js";
import { readPort } from "../lib/spec-codec.js";
import { readTimestamp } from "../lib/timestamp.js";
import { Bytes, Reader } from "../lib/wire.js";
import { UNUSED_NUMBERS, wireTwin, withRequestsAs } from "./wire-twin.js";

/*
 * What comes up a binary worker stream, decoded by hand where it is hot: every task's
 * updates and assignment acks, alone or in batches. The reflective fromBinary took ~14 µs a
 * task over a run of 100,000 tasks on the manager's one thread. As for RunTasks
 * (run-tasks-wire.ts), the manager reads Connect through a twin of ConnectRequest whose
 * `update`, `assignment_ack` and `batch` sit under field numbers no worker uses: in binary
 * they arrive as unknown fields, raw bytes decoded here; in JSON their names still work.
 * Anything the hand reader does not expect goes to fromBinary.
 */

/** The twin of ConnectRequest (see above; wire-twin.ts): update, assignment_ack, batch moved. */
export const ConnectRequestWireSchema = wireTwin(ConnectRequestSchema, {
  2: UNUSED_NUMBERS[0],
  4: UNUSED_NUMBERS[1],
  9: UNUSED_NUMBERS[2],
});

/** `service` with Connect reading its requests through the twin; handlers keep its type. */
export function withWireConnect<S extends DescService>(service: S): S {
  return withRequestsAs(service, "Connect", ConnectRequestWireSchema);
}

/**
 * A request read through the twin, as the ConnectRequest it is: from JSON (or a kind that
 * is not hot) as parsed, else decoded here. Bytes that do not decode: INVALID_ARGUMENT.
 */
export function wireRequest(req: ConnectRequest): ConnectRequest {
  try {
    return decode(req);
  } catch (error) {
    if (error instanceof ConnectError) throw error;
    throw new ConnectError(
      `cannot decode the message: ${(error as Error).message}`,
      Code.InvalidArgument,
    );
  }
}

function decode(req: ConnectRequest): ConnectRequest {
  const unknown = req.$unknown;
  // Parsed by the twin (JSON, or a kind that is not hot): the same fields, the real type.
  if (!unknown || unknown.length === 0 || req.message.case !== undefined) {
    return request(req.message);
  }
  const [field] = unknown;
  if (unknown.length > 1 || !field || field.wireType !== 2) {
    return fromBinary(ConnectRequestSchema, rebuild(unknown));
  }
  return readRequest(field.no, new Reader(field.data).delimited());
}

/** A ConnectRequest whose only field is `no` with `bytes`. */
function readRequest(no: number, bytes: Uint8Array): ConnectRequest {
  switch (no) {
    case 2:
      return request({ case: "update", value: readUpdate(bytes) });
    case 4:
      return request({ case: "assignmentAck", value: readAck(bytes) });
    case 9: {
      const messages: ConnectRequest[] = [];
      const r = new Reader(bytes);
      while (!r.done) {
        if (r.small() !== ((1 << 3) | 2)) return fromBinary(ConnectRequestSchema, tagged(9, bytes));
        messages.push(readInner(r.delimited()));
      }
      return request({
        case: "batch",
        value: { $typeName: "cube.v1.ConnectRequestBatch", messages },
      });
    }
    default:
      return fromBinary(ConnectRequestSchema, tagged(no, bytes));
  }
}

/** One message of a batch: a hot kind by hand, any other through fromBinary. */
function readInner(bytes: Uint8Array): ConnectRequest {
  const r = new Reader(bytes);
  if (r.done) return fromBinary(ConnectRequestSchema, bytes);
  const tag = r.small();
  const no = tag >>> 3;
  if ((tag & 7) !== 2 || (no !== 2 && no !== 4)) return fromBinary(ConnectRequestSchema, bytes);
  const value = r.delimited();
  if (!r.done) return fromBinary(ConnectRequestSchema, bytes);
  return readRequest(no, value);
}

function request(message: ConnectRequest["message"]): ConnectRequest {
  return { $typeName: "cube.v1.ConnectRequest", message };
}

/** TaskUpdate by hand; fromBinary for anything unexpected. */
function readUpdate(bytes: Uint8Array): TaskUpdate {
  const u: TaskUpdate = {
    $typeName: "cube.v1.TaskUpdate",
    seq: 0n,
    taskId: "",
    generation: 0n,
    state: 0,
    containerId: "",
    ports: [],
    exitCode: undefined,
    reason: "",
    time: undefined,
  };
  const r = new Reader(bytes);
  while (!r.done) {
    const tag = r.small();
    switch (tag) {
      case 1 << 3:
        u.seq = r.varint();
        break;
      case (2 << 3) | 2:
        u.taskId = r.text(r.delimited());
        break;
      case 3 << 3:
        u.generation = r.varint();
        break;
      case 4 << 3:
        u.state = r.small();
        break;
      case (5 << 3) | 2:
        u.containerId = r.text(r.delimited());
        break;
      case (6 << 3) | 2: {
        const port = readPort<PortBinding>(r.delimited(), "cube.v1.PortBinding");
        if (!port) return fromBinary(TaskUpdateSchema, bytes);
        u.ports.push(port);
        break;
      }
      case 7 << 3:
        u.exitCode = Number(BigInt.asIntN(32, r.varint()));
        break;
      case (8 << 3) | 2:
        u.reason = r.text(r.delimited());
        break;
      case (9 << 3) | 2:
        u.time = readTimestamp(r.delimited());
        if (!u.time) return fromBinary(TaskUpdateSchema, bytes);
        break;
      default:
        return fromBinary(TaskUpdateSchema, bytes);
    }
  }
  return u;
}

/** AssignmentAck by hand; fromBinary for anything unexpected. */
function readAck(bytes: Uint8Array): AssignmentAck {
  const a: AssignmentAck = {
    $typeName: "cube.v1.AssignmentAck",
    taskId: "",
    generation: 0n,
    action: 0,
  };
  const r = new Reader(bytes);
  while (!r.done) {
    const tag = r.small();
    if (tag === ((1 << 3) | 2)) a.taskId = r.text(r.delimited());
    else if (tag === 2 << 3) a.generation = r.varint();
    else if (tag === 3 << 3) a.action = r.small();
    else return fromBinary(AssignmentAckSchema, bytes);
  }
  return a;
}

/** Field `no` holding `bytes`, as message bytes. */
function tagged(no: number, bytes: Uint8Array): Uint8Array {
  return new Bytes(bytes.length + 8).field(no, bytes).finish();
}

/** Unknown fields back to the message bytes they were read from. */
function rebuild(fields: readonly UnknownField[]): Uint8Array {
  const out = new Bytes(256);
  for (const { no, wireType, data } of fields) out.varint((no << 3) | wireType).raw(data);
  return out.finish();
}
