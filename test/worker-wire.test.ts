import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import test from "ava";
import { TaskSchema, TaskState } from "../gen/cube/v1/task_pb.js";
import {
  AssignmentAction,
  type ConnectResponse,
  ConnectResponseSchema,
} from "../gen/cube/v1/worker_service_pb.js";
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
