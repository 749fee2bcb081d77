import { create, equals, fromBinary, fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import test from "ava";
import { TaskSchema, TaskState } from "../gen/cube/v1/task_pb.js";
import {
  AssignmentAckSchema,
  AssignmentAction,
  type ConnectRequest,
  ConnectRequestSchema,
  type ConnectResponse,
  ConnectResponseSchema,
  TaskUpdateSchema,
} from "../gen/cube/v1/worker_service_pb.js";
import { Bytes } from "../lib/wire.js";
import { ConnectRequestWireSchema, wireRequest } from "../manager/worker-requests-wire.js";
import { wireResponse } from "../manager/worker-wire.js";

type Outbound = ConnectResponse["message"];

const task = create(TaskSchema, {
  id: "t-1",
  spec: { image: "cube/httpd:local", env: { A: "é" }, ports: [{ containerPort: 80 }] },
  state: TaskState.SCHEDULED,
  workerId: "w-1",
  generation: 3n,
  revision: 42n,
  scheduledAt: timestampFromMs(1_700_000_000_123),
});

const kinds: [string, Outbound][] = [
  [
    "registered (through toBinary)",
    {
      case: "registered",
      value: create(ConnectResponseSchema, {
        message: {
          case: "registered",
          value: { workerId: "w-1", heartbeatInterval: durationFromMs(2000), lastUpdateSeq: 7n },
        },
      }).message.value as never,
    },
  ],
  [
    "RUN assignment",
    { case: "assignment", value: { $typeName: "cube.v1.Assignment", action: 1, task } },
  ],
  [
    "STOP assignment with a grace",
    {
      case: "assignment",
      value: {
        $typeName: "cube.v1.Assignment",
        action: AssignmentAction.STOP,
        task,
        stopGrace: durationFromMs(10_500),
      },
    },
  ],
  ["update ack", { case: "updateAck", value: { $typeName: "cube.v1.UpdateAck", seq: 2n ** 40n } }],
  ["update ack of 0", { case: "updateAck", value: { $typeName: "cube.v1.UpdateAck", seq: 0n } }],
  [
    "heartbeat",
    {
      case: "heartbeat",
      value: { $typeName: "cube.v1.Heartbeat", time: timestampFromMs(1_700_000_000_001) },
    },
  ],
];

/** What a worker reads from the wire. */
function roundTrip(message: ConnectResponse): ConnectResponse {
  return fromBinary(ConnectResponseSchema, toBinary(ConnectResponseSchema, message));
}

const plain = (message: Outbound) => create(ConnectResponseSchema, { message } as never);

for (const [name, message] of kinds) {
  test(`wireResponse: one ${name} reads back as the message`, (t) => {
    const back = roundTrip(wireResponse([message]));
    t.true(equals(ConnectResponseSchema, back, plain(message)));
    // A task puts its spec first (lib/task-codec.ts): the same message in another field order.
    if (message.case === "assignment") return;
    t.deepEqual(
      [...toBinary(ConnectResponseSchema, wireResponse([message]))],
      [...toBinary(ConnectResponseSchema, plain(message))],
      "the same bytes as toBinary",
    );
  });
}

test("wireResponse: several read back as a batch of them, in order", (t) => {
  const messages = kinds.map(([, m]) => m);
  const back = roundTrip(wireResponse(messages));
  const expected = create(ConnectResponseSchema, {
    message: { case: "batch", value: { messages: messages.map((m) => plain(m)) } },
  });
  t.true(equals(ConnectResponseSchema, back, expected));
  t.is(back.message.case, "batch");
});

// ---------------------------------------------------------------------------------------
// Up the stream: what the manager reads (manager/worker-requests-wire.ts).

/** What the manager makes of a worker's message, through the twin and the hand reader. */
function managerReads(message: ConnectRequest): ConnectRequest {
  const bytes = toBinary(ConnectRequestSchema, message);
  return wireRequest(fromBinary(ConnectRequestWireSchema, bytes) as unknown as ConnectRequest);
}

const update = create(TaskUpdateSchema, {
  seq: 2n ** 40n,
  taskId: "t-1",
  generation: 3n,
  state: TaskState.FAILED,
  containerId: "c1",
  ports: [{ containerPort: 80, hostPort: 40001, protocol: 1, hostIp: "127.0.0.1" }],
  exitCode: -1,
  reason: "exit code -1 é",
  time: timestampFromMs(1_700_000_000_123),
});
const ack = create(AssignmentAckSchema, { taskId: "t-1", generation: 3n, action: 2 });

const ups: [string, ConnectRequest][] = [
  ["an update", create(ConnectRequestSchema, { message: { case: "update", value: update } })],
  [
    "an update with exit code 0 and nothing else",
    create(ConnectRequestSchema, {
      message: { case: "update", value: { taskId: "t", exitCode: 0 } },
    }),
  ],
  ["an ack", create(ConnectRequestSchema, { message: { case: "assignmentAck", value: ack } })],
  [
    "a register (not hot: the twin reads it)",
    create(ConnectRequestSchema, {
      message: { case: "register", value: { workerId: "w-1", acceptsBatch: true } },
    }),
  ],
  [
    "a heartbeat",
    create(ConnectRequestSchema, {
      message: { case: "heartbeat", value: { time: timestampFromMs(5) } },
    }),
  ],
  [
    "a batch of updates, acks, a heartbeat and a health report",
    create(ConnectRequestSchema, {
      message: {
        case: "batch",
        value: {
          messages: [
            { message: { case: "update", value: update } },
            { message: { case: "assignmentAck", value: ack } },
            { message: { case: "heartbeat", value: {} } },
            { message: { case: "health", value: { taskId: "t-1", status: 1 } } },
            { message: { case: "update", value: { ...update, seq: 1n, ports: [] } } },
          ],
        },
      },
    }),
  ],
];

for (const [name, message] of ups) {
  test(`wireRequest: ${name} reads as fromBinary reads it`, (t) => {
    t.true(equals(ConnectRequestSchema, managerReads(message), message));
  });
}

test("wireRequest: an update with a field from a newer worker goes to fromBinary whole", (t) => {
  const bytes = new Bytes()
    .field(
      2,
      new Bytes()
        .string(2, "t-9")
        .varint((99 << 3) | 0)
        .varint(7)
        .finish(),
    )
    .finish();
  const read = wireRequest(
    fromBinary(ConnectRequestWireSchema, bytes) as unknown as ConnectRequest,
  );
  t.is(read.message.case, "update");
  t.is(read.message.case === "update" ? read.message.value.taskId : "", "t-9");
});

test("wireRequest: a truncated update is INVALID_ARGUMENT", (t) => {
  const bytes = new Bytes().field(2, new Uint8Array([0x12, 0x09, 0x41])).finish();
  const error = t.throws(
    () => wireRequest(fromBinary(ConnectRequestWireSchema, bytes) as unknown as ConnectRequest),
    { instanceOf: ConnectError },
  ) as ConnectError;
  t.is(error.code, Code.InvalidArgument);
});

test("wireRequest: JSON messages keep their field names through the twin", (t) => {
  for (const [name, message] of ups) {
    const json = toJson(ConnectRequestSchema, message);
    const read = wireRequest(fromJson(ConnectRequestWireSchema, json) as unknown as ConnectRequest);
    t.true(equals(ConnectRequestSchema, read, message), name);
  }
});
