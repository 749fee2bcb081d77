import { Code, ConnectError } from "@connectrpc/connect";
import type { TaskEvent } from "../../gen/cube/v1/task_pb.js";
import { fellBehind } from "../../lib/rpc/resume-after.js";
import type { ControlPlane } from "../core/control-plane.js";
import { withSpec } from "../rules/task-ops.js";

const PAGE = 1000;

/**
 * The events after `afterRevision` (0: only new ones, unless `fromStart`: every one), of one
 * task when `taskId` is set:
 * first the history (from memory when recent, else from the store), then live events, with
 * no gap and no duplicate between the two. OUT_OF_RANGE when the history asked for is no
 * longer kept, or lies in the future. A watcher that falls `watchBufferSize` events behind is
 * ended with RESOURCE_EXHAUSTED naming the revision to resume from, also in the
 * {@link RESUME_AFTER_TRAILER} trailer; it never slows anyone.
 */
export async function* watchTasks(
  cp: ControlPlane,
  afterRevision: bigint,
  taskId: string,
  signal: AbortSignal,
  fromStart = false,
): AsyncGenerator<TaskEvent> {
  if (afterRevision > cp.revision) {
    throw new ConnectError(
      `after_revision ${afterRevision} is ahead of the latest revision ${cp.revision}`,
      Code.OutOfRange,
    );
  }
  // Subscribe first: what is published while the history is read queues up here.
  const watcher = cp.hub.subscribe(cp.options.watchBufferSize, taskId || undefined);
  const until = cp.hub.lastRevision;
  let last = afterRevision === 0n && !fromStart ? until : afterRevision;
  const matches = (e: TaskEvent) => taskId === "" || e.task?.id === taskId;
  try {
    if (last < until) {
      const recent = cp.hub.since(last);
      if (recent) {
        for (const e of recent) {
          if (e.revision > until) break;
          if (matches(e)) yield e;
        }
      } else {
        const oldest = cp.store.oldestRevision();
        if (last + 1n < oldest) {
          throw new ConnectError(
            `events after revision ${last} are no longer kept (the oldest is ${oldest}): list the tasks, then watch from the list's revision`,
            Code.OutOfRange,
          );
        }
        for (;;) {
          const page = taskId
            ? await cp.store.taskEvents(taskId, last, PAGE)
            : await cp.store.eventsAfter(last, PAGE);
          const wanted = page.filter((e) => e.revision <= until);
          for (const e of wanted) yield withSpec(e, cp.tasks.get(e.task?.id ?? "")?.task);
          if (wanted.length < PAGE) break;
          last = (wanted.at(-1) as TaskEvent).revision;
        }
      }
    }
    last = until;
    for (;;) {
      const events = await watcher.take(signal);
      if (!events) {
        throw fellBehind(cp.options.watchBufferSize, last);
      }
      if (signal.aborted) return;
      for (const e of events) {
        last = e.revision;
        yield e;
      }
    }
  } finally {
    watcher.close();
  }
}
