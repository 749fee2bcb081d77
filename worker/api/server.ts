import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { MetricsService } from "../../gen/cube/v1/metrics_pb.js";
import type { Task } from "../../gen/cube/v1/task_pb.js";
import {
  type ListTasksRequest,
  TaskLogsResponseSchema,
  TaskService,
} from "../../gen/cube/v1/task_service_pb.js";
import { sinceProblem } from "../../lib/log-time.js";
import { redactTask } from "../../lib/redact.js";
import { validateTaskFilter } from "../../lib/task-filter.js";
import type { StatsFeed, StatsSample } from "../stream/stats-feed.js";
import { type Driver, DriverError } from "../tasks/driver.js";

/** What the worker's own services read. */
export interface WorkerView {
  readonly workerId: string;
  /** The worker's task records. */
  readonly tasks: () => Task[];
  readonly stats: StatsFeed;
  readonly driver: Driver;
}

const MAX_PAGE = 1000;

/**
 * The worker's own gRPC services: MetricsService (its node and its tasks) and a
 * read-only TaskService (GetTask, ListTasks, TaskLogs of the tasks it holds). The
 * other TaskService methods answer UNIMPLEMENTED: users change tasks through the manager.
 */
export function workerRoutes(view: WorkerView): (router: ConnectRouter) => void {
  const find = (id: string) => {
    if (!id) throw new ConnectError("id is required", Code.InvalidArgument);
    const task = view.tasks().find((t) => t.id === id);
    if (!task) throw new ConnectError(`task ${id} is not on this worker`, Code.NotFound);
    return task;
  };
  const checkWorker = (workerId: string) => {
    if (workerId && workerId !== view.workerId) {
      throw new ConnectError(
        `worker ${workerId} is not this worker (${view.workerId}); ask the manager`,
        Code.NotFound,
      );
    }
  };
  return (router) => {
    router.service(TaskService, {
      // Secret values went into the container; they never come back out of this port.
      getTask: (req) => ({ task: redactTask(find(req.id)) }),
      listTasks: (req) => listTasks(view, req),
      async *taskLogs(req, ctx) {
        const task = find(req.id);
        // Against this worker's clock, whose engine stamps the output.
        const problem = req.since && sinceProblem(req.since, Date.now());
        if (problem) throw new ConnectError(problem, Code.InvalidArgument);
        if (!task.containerId) {
          throw new ConnectError(`task ${req.id} has no container`, Code.FailedPrecondition);
        }
        const chunks = view.driver.logs(task.containerId, {
          follow: req.follow,
          tail: req.tail,
          since: req.since,
          signal: ctx.signal,
        });
        try {
          for await (const chunk of chunks) yield create(TaskLogsResponseSchema, chunk);
        } catch (error) {
          if (ctx.signal.aborted) return;
          if (error instanceof DriverError) throw new ConnectError(error.message, logsCode(error));
          throw ConnectError.from(error);
        }
      },
    });
    router.service(MetricsService, {
      getNodeMetrics(req) {
        checkWorker(req.workerId);
        return { metrics: view.stats.sample().node };
      },
      listNodeMetrics: () => ({ metrics: [view.stats.sample().node] }),
      listTaskMetrics(req) {
        if (req.workerId && req.workerId !== view.workerId) return { metrics: [] };
        const all = view.stats.taskMetrics();
        return { metrics: req.taskId ? all.filter((m) => m.taskId === req.taskId) : all };
      },
      async *watchMetrics(req, ctx) {
        checkWorker(req.workerId);
        // Only the latest sample waits: a client that does not read gets the newest when it
        // does, and the worker holds one sample for it, not one per interval.
        let latest: StatsSample | undefined = view.stats.sample();
        let wake: (() => void) | undefined;
        const onSample = (s: StatsSample) => {
          latest = s;
          wake?.();
        };
        view.stats.on("sample", onSample);
        ctx.signal.addEventListener("abort", () => wake?.(), { once: true });
        try {
          while (!ctx.signal.aborted) {
            const next = latest;
            if (next) {
              latest = undefined;
              yield next;
              continue;
            }
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
          }
        } finally {
          view.stats.off("sample", onSample);
        }
      },
    });
  };
}

function listTasks(view: WorkerView, req: ListTasksRequest) {
  validateTaskFilter(req);
  if (req.pageSize > MAX_PAGE) {
    throw new ConnectError(`page_size must be at most ${MAX_PAGE}`, Code.InvalidArgument);
  }
  const offset = req.pageToken ? Number(req.pageToken) : 0;
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new ConnectError("page_token is not one this server gave out", Code.InvalidArgument);
  }
  const matches = view
    .tasks()
    .filter(
      (t) =>
        (req.states.length === 0 || req.states.includes(t.state)) &&
        (!req.workerId || req.workerId === view.workerId) &&
        (!req.name || t.spec?.name === req.name) &&
        Object.entries(req.labels).every(([k, v]) => t.spec?.labels[k] === v),
    )
    .sort((a, b) => created(a) - created(b) || a.id.localeCompare(b.id));
  const size = req.pageSize || 100;
  const page = matches.slice(offset, offset + size);
  const more = offset + size < matches.length;
  return {
    tasks: page.map((t) => redactTask(t)),
    nextPageToken: more ? String(offset + size) : "",
    revision: 0n,
  };
}

const created = (t: Task) =>
  t.scheduledAt ? timestampMs(t.scheduledAt) : t.startedAt ? timestampMs(t.startedAt) : 0;

/**
 * A log read's failure, in the words of gRPC: the container gone, or the engine away or
 * failing. Not UNAVAILABLE nor INTERNAL: the manager's proxy takes those for a worker it could
 * not reach, and the worker's own words would be lost.
 */
function logsCode(error: DriverError): Code {
  return error.kind === "container-gone" ? Code.NotFound : Code.FailedPrecondition;
}
