import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { WorkerService } from "../../gen/cube/v1/worker_service_pb.js";
import { quote } from "../../lib/quote.js";
import type { ControlPlane } from "../core/control-plane.js";
import type { WorkerEntry } from "../core/worker-table.js";
import { nodeOf } from "../rules/node-ops.js";
import { workerStream } from "./worker-stream.js";

/**
 * The manager's WorkerService: the workers' Connect stream, and ListWorkers, GetWorker and
 * WatchWorkers for people.
 */
export function workerServiceRoutes(cp: ControlPlane): (router: ConnectRouter) => void {
  return (router) =>
    router.service(WorkerService, {
      connect(requests, ctx) {
        return workerStream(cp, requests, ctx);
      },
      listWorkers() {
        return { workers: [...cp.workers.all()].map((w) => w.toProto()) };
      },
      getWorker(req) {
        const worker = cp.workers.find(req.id);
        if (!worker) {
          throw new ConnectError(
            `worker ${quote(req.id)} not found (give an id, or a name only one worker has)`,
            Code.NotFound,
          );
        }
        return { worker: worker.toProto() };
      },
      async *watchWorkers(_req, ctx) {
        const sub = cp.workerFeed.subscribe();
        // What this watcher was last sent of each worker: a removed one is sent once more,
        // as it was, with `removed` (bounded by the workers there are or were while it ran).
        const sent = new Map<string, ReturnType<typeof watched>>();
        const send = (w: WorkerEntry) => {
          const message = watched(w);
          sent.set(w.id, message);
          return message;
        };
        try {
          for (const w of cp.workers.all()) yield send(w);
          while (!ctx.signal.aborted) {
            for (const id of await sub.changed(ctx.signal)) {
              const w = cp.workers.get(id);
              if (w) {
                yield send(w);
                continue;
              }
              const last = sent.get(id);
              if (!last) continue;
              sent.delete(id);
              yield { ...last, removed: true };
            }
          }
        } finally {
          sub.close();
        }
      },
    });
}

/** A worker as WatchWorkers sends it: with its scheduling state, as ListNodes shows it. */
function watched(w: WorkerEntry) {
  const { worker, cordoned, drain } = nodeOf(w);
  return { worker, cordoned, drain };
}
