import { useEffect, useState } from "preact/hooks";
import {
  DesiredState,
  type Task,
  type TaskEvent,
  TaskEventType,
  TaskState,
} from "../../../gen/cube/v1/task_pb.js";
import { unimplemented, why } from "../api.js";
import {
  age,
  clock,
  cores,
  bytes as fmtBytes,
  ms,
  ports,
  stateClass,
  taskStateText,
} from "../format.js";
import { useNow, useStore } from "../hooks.js";
import type { Session } from "../session.js";
import { TaskLogs } from "./task-logs.js";

/**
 * One task: what it is, why it is where it is (a PENDING task's reason says what no worker
 * has), its history, live, and its output, followed; and a stop button.
 */
export function TaskDetail({ session, id }: { session: Session; id: string }) {
  useStore(session.tasks);
  const now = useNow(1000);
  const live = session.tasks.byId.get(id);
  const [fetched, setFetched] = useState<Task | undefined>();
  const [missing, setMissing] = useState<string | undefined>();
  // A link opened before the list arrived (or to a task of another page): ask for it.
  useEffect(() => {
    if (live || !session.tasks.loaded) return;
    session.api.tasks
      .getTask({ id })
      .then((r) => setFetched(r.task))
      .catch((e: unknown) => setMissing(why(e)));
  }, [id, live, session]);
  const task = live ?? fetched;
  const reason = usePendingReason(session, task);
  if (!task) {
    return (
      <div class="panel">
        <p class={missing ? "error" : "muted"}>{missing ?? "loading…"}</p>
      </div>
    );
  }
  const spec = task.spec;
  const ended = task.state === TaskState.COMPLETED || task.state === TaskState.FAILED;
  return (
    <div class="detail">
      <div class="detail-head">
        <h1>
          {spec?.name || task.id} <span class={stateClass(task.state)}>{taskStateText(task)}</span>
        </h1>
        <StopButton session={session} task={task} />
      </div>
      {task.state === TaskState.PENDING && (
        <div class="why-pending" data-testid="why-pending">
          <strong>Why pending:</strong> {reason || "waiting for the scheduler"}
        </div>
      )}
      {task.state !== TaskState.PENDING && task.reason && (
        <p class={task.state === TaskState.FAILED ? "error" : "muted"} data-testid="reason">
          {task.reason}
        </p>
      )}
      <section class="panel">
        <dl class="fields">
          <dt>ID</dt>
          <dd class="mono">{task.id}</dd>
          <dt>Image</dt>
          <dd class="mono">{spec?.image}</dd>
          {spec && (spec.command.length > 0 || spec.args.length > 0) && (
            <>
              <dt>Command</dt>
              <dd class="mono">{[...spec.command, ...spec.args].join(" ")}</dd>
            </>
          )}
          <dt>Worker</dt>
          <dd>
            {task.workerId
              ? `${session.workers.name(task.workerId)} (${task.workerId})`
              : "none yet"}
          </dd>
          <dt>Desired</dt>
          <dd>{DesiredState[task.desiredState]}</dd>
          <dt>Ports</dt>
          <dd class="mono">{ports(task.ports) || "none"}</dd>
          <dt>Resources</dt>
          <dd>
            {cores(spec?.resources?.cpu ?? 0)} cores, {fmtBytes(spec?.resources?.memoryBytes ?? 0n)}{" "}
            memory, {fmtBytes(spec?.resources?.diskBytes ?? 0n)} disk
          </dd>
          <dt>Restarts</dt>
          <dd>{task.restartCount}</dd>
          {task.exitCode !== undefined && (
            <>
              <dt>Exit code</dt>
              <dd>{task.exitCode}</dd>
            </>
          )}
          <dt>Created</dt>
          <dd>
            {clock(task.createdAt)} ({age(ms(task.createdAt), now)} ago)
          </dd>
          {task.startedAt && (
            <>
              <dt>Started</dt>
              <dd>{clock(task.startedAt)}</dd>
            </>
          )}
          {task.readyAt && (
            <>
              <dt>Ready since</dt>
              <dd>
                {clock(task.readyAt)} ({age(ms(task.readyAt), now)})
              </dd>
            </>
          )}
          {task.finishedAt && ended && (
            <>
              <dt>Finished</dt>
              <dd>{clock(task.finishedAt)}</dd>
            </>
          )}
          {spec && Object.keys(spec.labels).length > 0 && (
            <>
              <dt>Labels</dt>
              <dd class="mono">
                {Object.entries(spec.labels)
                  .map(([k, v]) => `${k}=${v}`)
                  .join(", ")}
              </dd>
            </>
          )}
        </dl>
      </section>
      <section class="panel">
        <h2>Events</h2>
        <Events session={session} id={task.id} />
      </section>
      <section class="panel">
        <h2>Logs</h2>
        {task.workerId && task.containerId ? (
          <TaskLogs session={session} id={task.id} container={task.containerId} />
        ) : (
          <p class="muted" data-testid="logs-status">
            {task.workerId
              ? "No output yet: the container is being created."
              : "No output: the task has not been placed on a worker."}
          </p>
        )}
      </section>
    </div>
  );
}

/**
 * A PENDING task's reason as the manager has it now. The manager updates a pending reason in
 * place, without an event (a pass over a long queue would otherwise flood every watcher), so
 * the watch does not bring it: the page asks GetTask when the task is shown, and again when
 * the workers' capacity changes (one joins, leaves, or its allocation moves) — what changes
 * the reason — never on a timer.
 */
function usePendingReason(session: Session, task: Task | undefined): string | undefined {
  const [fetched, setFetched] = useState<{ id: string; reason: string } | undefined>();
  const pending = task?.state === TaskState.PENDING;
  const capacity = pending
    ? [...session.workers.byId.values()]
        .map(
          (w) =>
            `${w.id}:${w.status}:${w.engine?.status}:${w.allocated?.cpu}:${w.allocated?.memoryBytes}`,
        )
        .join(",")
    : "";
  const id = task?.id;
  const revision = task?.revision;
  useEffect(() => {
    if (!pending || !id) return;
    const abort = new AbortController();
    session.api.tasks
      .getTask({ id }, { signal: abort.signal })
      .then((r) => setFetched({ id, reason: r.task?.reason ?? "" }))
      .catch(() => undefined);
    return () => abort.abort();
  }, [session, id, pending, capacity, revision]);
  if (!task) return undefined;
  return fetched?.id === task.id && fetched.reason ? fetched.reason : task.reason;
}

/** Stop, with a second click to confirm; the manager's refusal (a read token) is shown as it is. */
function StopButton({ session, task }: { session: Session; task: Task }) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const stopping = task.desiredState === DesiredState.STOPPED;
  const ended = task.state === TaskState.COMPLETED || task.state === TaskState.FAILED;
  if (stopping || ended) {
    return <span class="muted">{stopping ? "stop requested" : ""}</span>;
  }
  return (
    <span class="actions">
      {confirming ? (
        <>
          <button
            type="button"
            class="danger"
            disabled={busy}
            data-testid="confirm-stop"
            onClick={() => {
              setBusy(true);
              setError(undefined);
              session.api.tasks
                .stopTask({ id: task.id })
                .catch((e: unknown) => setError(why(e)))
                .finally(() => {
                  setBusy(false);
                  setConfirming(false);
                });
            }}
          >
            Stop {task.spec?.name || "task"}
          </button>
          <button type="button" class="quiet" onClick={() => setConfirming(false)}>
            Cancel
          </button>
        </>
      ) : (
        <button type="button" data-testid="stop" onClick={() => setConfirming(true)}>
          Stop…
        </button>
      )}
      {error && <span class="error">{error}</span>}
    </span>
  );
}

/** The task's recorded events (ListTaskEvents), then each new one as the watch brings it. */
function Events({ session, id }: { session: Session; id: string }) {
  const [events, setEvents] = useState<readonly TaskEvent[]>([]);
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    const abort = new AbortController();
    let history: TaskEvent[] = [];
    const early: TaskEvent[] = [];
    let listed = false;
    const merge = (list: readonly TaskEvent[]) => {
      // By revision, once each: an event may come both in the history and live.
      const byRevision = new Map<bigint, TaskEvent>();
      for (const e of list) byRevision.set(e.revision, e);
      return [...byRevision.values()].sort((a, b) => (a.revision < b.revision ? -1 : 1));
    };
    // Listen first, so nothing recorded while the history loads is missed.
    const off = session.tasks.onEvent((e) => {
      if (e.task?.id !== id) return;
      if (!listed) early.push(e);
      else setEvents((old) => merge([...old, e]));
    });
    (async () => {
      let pageToken = "";
      do {
        const page = await session.api.tasks.listTaskEvents(
          { taskId: id, pageSize: 1000, pageToken },
          { signal: abort.signal },
        );
        history = history.concat(page.events);
        pageToken = page.nextPageToken;
      } while (pageToken);
      listed = true;
      setEvents(merge([...history, ...early]));
    })().catch((e: unknown) => {
      if (!abort.signal.aborted && !unimplemented(e)) setError(why(e));
    });
    return () => {
      abort.abort();
      off();
    };
  }, [id, session]);
  if (error) return <p class="error">{error}</p>;
  return (
    <table class="events">
      <tbody>
        {[...events].reverse().map((e) => (
          <tr key={String(e.revision)} data-testid="event">
            <td class="mono muted">{clock(e.time)}</td>
            <td>{TaskEventType[e.type]?.replace("_", " ")}</td>
            <td>
              {e.task && <span class={stateClass(e.task.state)}>{TaskState[e.task.state]}</span>}
            </td>
            <td>{e.message}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
