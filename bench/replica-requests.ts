import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { type TaskSpec, TaskSpecSchema } from "../gen/cube/v1/task_pb.js";
import {
  type RunTasksRequest,
  RunTasksRequestSchema,
  type RunTasksResponse,
  RunTasksResponseSchema,
  TaskService,
  type TaskView,
} from "../gen/cube/v1/task_service_pb.js";
import { Bytes } from "../lib/wire.js";
import { UNUSED_NUMBERS, wireTwin, withAnswersAs } from "../manager/wire-twin.js";

/*
 * A RunTasks call of replicas sends one spec thousands of times. The reflective toBinary
 * encodes it again for every request (~15 µs each: 75 ms for 5,000, on the caller's one
 * thread, while the manager waits for the call). Here the spec is encoded once and each
 * request is that encoding plus its id, carried as unknown fields of field 1: protobuf-es
 * writes unknown fields as they are, so the bytes on the wire are exactly those of the
 * plain message (test/run-tasks-wire.test.ts compares them).
 */

/** RunTasksRequest.requests, RunTasksResponse.tasks (proto/cube/v1/task_service.proto). */
const REQUESTS = 1;
const TASKS = 1;
/** RunTaskRequest field numbers. */
const SPEC = 1;
const ID = 2;

/**
 * A RunTasksRequest asking for one task per id, all with `spec` (an empty id lets the
 * manager choose one), that encodes the spec once instead of once per task. Only for binary
 * protobuf: the requests travel as unknown fields, which JSON does not carry.
 */
export function replicaRequests(
  spec: TaskSpec | MessageInitShape<typeof TaskSpecSchema>,
  ids: readonly string[],
  view?: TaskView,
): RunTasksRequest {
  const specBytes = toBinary(TaskSpecSchema, create(TaskSpecSchema, spec));
  const specField = new Bytes(specBytes.length + 8).field(SPEC, specBytes).finish();
  const request = create(RunTasksRequestSchema, view === undefined ? {} : { view });
  request.$unknown = ids.map((id) => {
    const body = new Bytes(specField.length + id.length + 8).raw(specField).string(ID, id);
    return {
      no: REQUESTS,
      wireType: WireType.LengthDelimited,
      data: new Bytes(body.length + 4).delimited(body.finish()).finish(),
    };
  });
  return request;
}

/**
 * TaskService as a load generator calls it: RunTasks answers are read through a twin of
 * RunTasksResponse whose `tasks` arrive as unknown fields, counted, not decoded. Decoding
 * 5,000 tasks by reflection takes the caller's one thread 30–100 ms; when four answers
 * come back from one group commit, the next requests waited behind them while the manager
 * sat idle.
 */
export const CountingTaskService = withAnswersAs(
  TaskService,
  "RunTasks",
  wireTwin(RunTasksResponseSchema, { [TASKS]: UNUSED_NUMBERS[0] }),
);

/** How many tasks a RunTasks answer holds, read through {@link CountingTaskService} or not. */
export function answeredTasks(answer: RunTasksResponse): number {
  const unread = answer.$unknown?.filter((u) => u.no === TASKS).length ?? 0;
  return answer.tasks.length + unread;
}
