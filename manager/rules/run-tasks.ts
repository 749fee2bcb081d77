import { equals } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Task, type TaskSpec, TaskSpecSchema } from "../../gen/cube/v1/task_pb.js";
import type { RunTaskRequest } from "../../gen/cube/v1/task_service_pb.js";
import type { ControlPlane } from "../core/control-plane.js";
import type { TaskEntry } from "../core/task-table.js";
import { acceptTask, knownTask } from "./task-ops.js";
import { LIMITS, validateRunTask, validateTaskId } from "./validate-spec.js";

/**
 * Runs a batch of tasks, all or none: every request is checked as RunTask checks it, and
 * ids must not repeat within the batch; the first bad one fails the whole call with its
 * index in the message (INVALID_ARGUMENT "requests[3].spec.image: required", ALREADY_EXISTS
 * "requests[3]: task …") and nothing is stored. Then the new tasks are created and placed in
 * order, in one synchronous run (so one group commit stores them all), and it resolves once
 * they are durable, with the tasks in request order: new ones as stored, idempotent retries
 * as they are now. `caller`: the id of the calling token ("" without tokens), which a retry
 * of a task with secret values must be (task-ops.ts `knownTask`).
 */
export async function runTasks(
  cp: ControlPlane,
  requests: readonly RunTaskRequest[],
  caller: string,
): Promise<Task[]> {
  const n = requests.length;
  if (n === 0 || n > LIMITS.batchSize) {
    throw new ConnectError(
      `requests: 1 to ${LIMITS.batchSize} tasks (got ${n})`,
      Code.InvalidArgument,
    );
  }
  const specs: TaskSpec[] = new Array(n);
  const known: (TaskEntry | undefined)[] = new Array(n);
  const firstIndex = new Map<string, number>();
  // Replicas in one call carry equal specs, one after another: a request whose spec equals
  // the previous one's is not checked again, and its task shares the checked spec object
  // (a hundred thousand replicas keep one spec in memory, not a hundred thousand).
  let lastSent: TaskSpec | undefined;
  let last: TaskSpec | undefined;
  let i = 0;
  try {
    for (; i < n; i++) {
      const request = requests[i] as RunTaskRequest;
      const id = request.id;
      let spec: TaskSpec;
      if (last && lastSent && request.spec && equals(TaskSpecSchema, request.spec, lastSent)) {
        validateTaskId(id);
        spec = last;
      } else {
        spec = validateRunTask(request);
        lastSent = request.spec;
        last = spec;
      }
      if (id !== "") {
        const first = firstIndex.get(id);
        if (first !== undefined) {
          throw new ConnectError(`id: "${id}" repeats requests[${first}].id`, Code.InvalidArgument);
        }
        firstIndex.set(id, i);
      }
      specs[i] = spec;
      known[i] = knownTask(cp, id, spec, caller);
    }
  } catch (error) {
    throw atRequest(error, i);
  }
  // Checked: from here on nothing throws, so the batch is stored whole.
  const tasks: Task[] = new Array(n);
  for (let j = 0; j < n; j++) {
    if (!known[j])
      tasks[j] = acceptTask(cp, (requests[j] as RunTaskRequest).id, specs[j] as TaskSpec, caller);
  }
  await cp.committed();
  for (let j = 0; j < n; j++) {
    const entry = known[j];
    if (entry) tasks[j] = entry.task;
  }
  return tasks;
}

/** The error of one request, its message prefixed with where the request is in the batch. */
function atRequest(error: unknown, i: number): unknown {
  if (!(error instanceof ConnectError)) return error;
  // INVALID_ARGUMENT messages start with a field path, which the index extends.
  const prefix = error.code === Code.InvalidArgument ? `requests[${i}].` : `requests[${i}]: `;
  return new ConnectError(`${prefix}${error.rawMessage}`, error.code);
}
