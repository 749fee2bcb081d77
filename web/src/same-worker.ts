import { equals } from "@bufbuild/protobuf";
import { type Worker, WorkerSchema } from "../../gen/cube/v1/worker_pb.js";

/**
 * Whether two versions of a worker, as WatchWorkers sent them, differ in nothing but when it
 * was last heard from. The manager sends a worker again when its status, tasks, engine or
 * metrics change — and when it is cordoned, uncordoned or its drain changes state, which the
 * Worker message does not show: a worker sent again the same is one of those.
 */
export function sameButHeartbeat(a: Worker, b: Worker): boolean {
  return equals(
    WorkerSchema,
    { ...a, lastHeartbeat: undefined },
    { ...b, lastHeartbeat: undefined },
  );
}
