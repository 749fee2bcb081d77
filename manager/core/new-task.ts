import { create } from "@bufbuild/protobuf";
import {
  DesiredState,
  type Task,
  TaskSchema,
  type TaskSpec,
  TaskState,
} from "../../gen/cube/v1/task_pb.js";
import { timestampLiteral } from "../../lib/timestamp.js";

/** A task just accepted: PENDING, desired RUNNING, "waiting to be scheduled", created at `nowMs`. */
export function newTask(id: string, spec: TaskSpec, revision: bigint, nowMs: number): Task {
  return create(TaskSchema, {
    id,
    spec,
    desiredState: DesiredState.RUNNING,
    state: TaskState.PENDING,
    reason: "waiting to be scheduled",
    revision,
    createdAt: timestampLiteral(nowMs),
  });
}
