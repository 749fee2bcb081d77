import { toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { type ConnectResponse, ConnectResponseSchema } from "../gen/cube/v1/worker_service_pb.js";
import { delimitedTask } from "../lib/task-codec.js";
import { Bytes } from "../lib/wire.js";
import { asUnknown } from "./prewired.js";

/*
 * What goes down a binary worker stream, encoded by hand. The reflective toBinary walked
 * every assignment, ack and heartbeat of every batch (~13 µs a task over a run of 100,000
 * tasks, on the manager's one thread); the hand codec writes the same bytes. The encoding
 * rides in the message's unknown fields, which protobuf-es writes as they are (see
 * prewired.ts): on the wire it is the same ConnectResponse. Message kinds without a hand
 * encoding here (`registered`, rare) go through toBinary. test/worker-wire.test.ts reads
 * the bytes back with fromBinary.
 */

type Outbound = ConnectResponse["message"];

/** ConnectResponse field numbers (proto/cube/v1/worker_service.proto). */
const ASSIGNMENT = 2;
const UPDATE_ACK = 3;
const HEARTBEAT = 4;
const BATCH = 5;

/** Where a message's body is written before it is copied behind its tag and length. */
const body = new Bytes(1024);

/** Appends `message` to `out` as the fields of a ConnectResponse (one oneof field). */
function writeResponse(out: Bytes, message: Outbound): void {
  switch (message.case) {
    case "assignment": {
      const a = message.value;
      body.reset().uint(1, a.action);
      if (a.task) delimitedTask(body.varint((2 << 3) | WireType.LengthDelimited), a.task);
      body.duration(3, a.stopGrace);
      out.varint((ASSIGNMENT << 3) | WireType.LengthDelimited).delimited(body.finish());
      return;
    }
    case "updateAck":
      out
        .varint((UPDATE_ACK << 3) | WireType.LengthDelimited)
        .delimited(body.reset().uint(1, message.value.seq).finish());
      return;
    case "heartbeat":
      out
        .varint((HEARTBEAT << 3) | WireType.LengthDelimited)
        .delimited(body.reset().timestamp(1, message.value.time).finish());
      return;
    default:
      out.raw(toBinary(ConnectResponseSchema, { $typeName: "cube.v1.ConnectResponse", message }));
  }
}

/**
 * `messages` as one ConnectResponse, encoded by hand: the message itself when there is one,
 * else a batch holding them in order (only for a worker that accepts batches).
 */
export function wireResponse(messages: readonly Outbound[]): ConnectResponse {
  const out = new Bytes(256 * messages.length);
  if (messages.length === 1) {
    writeResponse(out, messages[0] as Outbound);
  } else {
    const batch = new Bytes(256 * messages.length);
    const one = new Bytes(256);
    for (const message of messages) {
      writeResponse(one.reset(), message);
      batch.field(1, one.finish());
    }
    out.field(BATCH, batch.finish());
  }
  return {
    $typeName: "cube.v1.ConnectResponse",
    message: { case: undefined },
    $unknown: asUnknown(out.finish()),
  };
}
