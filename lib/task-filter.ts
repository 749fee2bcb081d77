import { Code, ConnectError } from "@connectrpc/connect";
import type { ListTasksRequest } from "../gen/cube/v1/task_service_pb.js";

/**
 * Bounds of a ListTasks filter, as wide as what a task spec may hold (a name, 64 labels):
 * a filter beyond them can match nothing, and matching costs tasks × labels on the server's
 * one thread, so a 4 MiB request of labels would stall it.
 */
export const FILTER_LIMITS = {
  states: 16,
  workerIdLength: 128,
  nameLength: 253,
  labelCount: 64,
  labelKeyLength: 253,
  labelValueLength: 1024,
} as const;

/**
 * Checks the filter fields of a ListTasks request (manager and worker alike), or throws
 * INVALID_ARGUMENT naming the field ("labels: at most 64 entries").
 */
export function validateTaskFilter(req: ListTasksRequest): void {
  const bad = (field: string, message: string): never => {
    throw new ConnectError(`${field}: ${message}`, Code.InvalidArgument);
  };
  if (req.states.length > FILTER_LIMITS.states) {
    bad("states", `at most ${FILTER_LIMITS.states}`);
  }
  if (req.workerId.length > FILTER_LIMITS.workerIdLength) {
    bad("worker_id", `at most ${FILTER_LIMITS.workerIdLength} characters`);
  }
  if (req.name.length > FILTER_LIMITS.nameLength) {
    bad("name", `at most ${FILTER_LIMITS.nameLength} characters`);
  }
  const labels = Object.entries(req.labels);
  if (labels.length > FILTER_LIMITS.labelCount) {
    bad("labels", `at most ${FILTER_LIMITS.labelCount} entries (got ${labels.length})`);
  }
  for (const [key, value] of labels) {
    if (key.length > FILTER_LIMITS.labelKeyLength) {
      bad("labels", `a key of at most ${FILTER_LIMITS.labelKeyLength} characters`);
    }
    if (value.length > FILTER_LIMITS.labelValueLength) {
      bad(`labels["${key}"]`, `at most ${FILTER_LIMITS.labelValueLength} characters`);
    }
  }
}
