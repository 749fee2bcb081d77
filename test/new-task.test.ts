import { create, equals } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import test from "ava";
import { DesiredState, TaskSchema, TaskSpecSchema, TaskState } from "../gen/cube/v1/task_pb.js";
import { timestampLiteral } from "../lib/timestamp.js";
import { newTask } from "../manager/new-task.js";

test("newTask is the message create(TaskSchema) makes, field for field", (t) => {
  const spec = create(TaskSpecSchema, { image: "cube/httpd:local" });
  const now = 1_795_000_000_123;
  const literal = newTask("t1", spec, 7n, now);
  const reflective = create(TaskSchema, {
    id: "t1",
    spec,
    desiredState: DesiredState.RUNNING,
    state: TaskState.PENDING,
    reason: "waiting to be scheduled",
    revision: 7n,
    createdAt: timestampFromMs(now),
  });
  t.true(equals(TaskSchema, literal, reflective));
  // Same keys too: a field Task gains (and create() fills in) must be added to the literal.
  t.deepEqual(Object.keys(literal).sort(), Object.keys(reflective).sort());
  t.deepEqual({ ...literal }, { ...reflective });
});

test("timestampLiteral is the Timestamp timestampFromMs makes", (t) => {
  for (const ms of [0, 1, 999, 1000, 1_795_000_000_123, 1_795_000_000_999]) {
    t.deepEqual({ ...timestampLiteral(ms) }, { ...timestampFromMs(ms) }, String(ms));
  }
});
