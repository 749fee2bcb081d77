import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import type { TaskState } from "../../gen/cube/v1/task_pb.js";
import { TaskService, TaskView } from "../../gen/cube/v1/task_service_pb.js";
import { redactEvent, redactTask } from "../../lib/redact.js";
import { validateTaskFilter } from "../../lib/task-filter.js";
import type { ControlPlane } from "../core/control-plane.js";
import { runTasks } from "../rules/run-tasks.js";
import { findTask, runTask, stopTask, taskEvents } from "../rules/task-ops.js";
import { CALLER } from "./authorization.js";
import type { ClusterTls } from "./cluster-tls.js";
import { decodePageToken, encodePageToken, pageSize } from "./page-token.js";
import { proxyTaskLogs } from "./task-logs.js";
import { watchTasks } from "./watch-tasks.js";

/**
 * The manager's TaskService: run, inspect, list, stop, follow tasks, and their logs through
 * the worker that runs them. Reads answer what is durable (they wait for the group commit in
 * flight), so nothing shown can be lost to a crash. Every task that leaves here has its
 * secret values redacted (lib/redact.ts): they go only to the worker that runs the task.
 */
export function taskServiceRoutes(
  cp: ControlPlane,
  tls?: ClusterTls,
): (router: ConnectRouter) => void {
  return (router) =>
    router.service(TaskService, {
      async runTask(req, ctx) {
        return { task: redactTask(await runTask(cp, req, callerId(ctx))) };
      },
      async runTasks(req, ctx) {
        const tasks = await runTasks(cp, req.requests, callerId(ctx));
        const withSpec = req.view !== TaskView.BASIC;
        return {
          tasks: withSpec
            ? tasks.map((t) => redactTask(t))
            : tasks.map((task) => ({ ...task, spec: undefined })),
        };
      },
      async getTask(req) {
        const entry = findTask(cp, req.id);
        await cp.committed();
        return { task: redactTask(entry.task) };
      },
      async listTasks(req) {
        validateTaskFilter(req);
        const after = decodePageToken(req.pageToken, "tasks");
        await cp.committed();
        const revision = cp.revision;
        const { tasks, next } = cp.tasks.page(
          {
            states: new Set<TaskState>(req.states),
            workerId: req.workerId,
            name: req.name,
            labels: req.labels,
          },
          after,
          pageSize(req.pageSize),
        );
        return {
          tasks: tasks.map((t) => redactTask(t)),
          nextPageToken: next === undefined ? "" : encodePageToken("tasks", next),
          revision,
        };
      },
      async stopTask(req) {
        return { task: redactTask(await stopTask(cp, req.id)) };
      },
      async listTaskEvents(req) {
        const after = decodePageToken(req.pageToken, "events");
        const { events, more } = await taskEvents(cp, req.taskId, after, pageSize(req.pageSize));
        const last = events.at(-1)?.revision;
        return {
          events: events.map(redactEvent),
          nextPageToken: more && last !== undefined ? encodePageToken("events", last) : "",
        };
      },
      async *watchTasks(req, ctx) {
        if (req.fromOldest && req.afterRevision !== 0n) {
          throw new ConnectError(
            "from_oldest replays the whole history: after_revision must then be 0",
            Code.InvalidArgument,
          );
        }
        // The oldest kept is 1 when none was dropped: after 0, then, is everything.
        const after = req.fromOldest ? cp.store.oldestRevision() - 1n : req.afterRevision;
        for await (const event of watchTasks(cp, after, req.taskId, ctx.signal, req.fromOldest)) {
          yield { event: redactEvent(event) };
        }
      },
      async *taskLogs(req, ctx) {
        yield* proxyTaskLogs(cp, req, ctx.signal, tls);
      },
    });
}

/** The id of the token the call was authorized as; "" on a manager without tokens. */
function callerId(ctx: HandlerContext): string {
  return CALLER.get(ctx.signal)?.id ?? "";
}
