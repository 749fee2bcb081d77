import { Component } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import type { Task } from "../../../gen/cube/v1/task_pb.js";
import { age, ms, ports, shortId, stateClass, taskStateText } from "../format.js";
import { useNow } from "../hooks.js";
import type { WorkerStore } from "../worker-store.js";

/** Every row has this height (px), so the rows in view follow from the scroll position alone. */
const ROW = 32;
/** Rows drawn above and below the visible ones, so a fast scroll shows no blank. */
const OVERSCAN = 10;

/**
 * A virtualised task table: whatever the number of tasks (10,000 and more), only the rows in
 * view (plus a few) are in the DOM; spacer rows above and below keep the scroll bar true.
 * `ids` is in display order; tasks are looked up as rendered, so a live change shows at the
 * next frame without rebuilding the list.
 */
export function TaskTable(props: {
  ids: readonly string[];
  tasks: ReadonlyMap<string, Task>;
  workers: WorkerStore;
  height?: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [view, setView] = useState(800);
  const now = useNow(5000);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const resize = new ResizeObserver(() => setView(el.clientHeight));
    resize.observe(el);
    return () => resize.disconnect();
  }, []);
  const total = props.ids.length;
  const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
  const last = Math.min(total, Math.ceil((top + view) / ROW) + OVERSCAN);
  const rows: Task[] = [];
  for (let i = first; i < last; i++) {
    const task = props.tasks.get(props.ids[i] as string);
    if (task) rows.push(task);
  }
  return (
    <div
      class="table-scroll"
      ref={box}
      style={{ height: props.height ?? "calc(100vh - 190px)" }}
      onScroll={(e) => setTop((e.target as HTMLDivElement).scrollTop)}
    >
      <table class="tasks">
        <colgroup>
          <col style={{ width: "9em" }} />
          <col style={{ width: "12%" }} />
          <col style={{ width: "11em" }} />
          <col style={{ width: "9%" }} />
          <col style={{ width: "14%" }} />
          <col style={{ width: "14%" }} />
          <col style={{ width: "5em" }} />
          <col style={{ width: "4em" }} />
          <col />
        </colgroup>
        <thead>
          <tr>
            <th>ID</th>
            <th>Name</th>
            <th>State</th>
            <th>Worker</th>
            <th>Image</th>
            <th>Ports</th>
            <th>Restarts</th>
            <th>Age</th>
            <th>Reason</th>
          </tr>
        </thead>
        <tbody>
          {first > 0 && <tr class="spacer" style={{ height: `${first * ROW}px` }} />}
          {rows.map((t) => (
            <TaskRow
              key={t.id}
              task={t}
              worker={t.workerId ? props.workers.name(t.workerId) : ""}
              age={age(ms(t.createdAt), now)}
            />
          ))}
          {last < total && <tr class="spacer" style={{ height: `${(total - last) * ROW}px` }} />}
        </tbody>
      </table>
      {total === 0 && <p class="empty">No task here.</p>}
    </div>
  );
}

interface RowProps {
  task: Task;
  worker: string;
  age: string;
}

/**
 * One row. A task changed is a new object (events carry the task after the change), so a row
 * whose task, worker name and age are the same as last frame is not diffed again: at 100
 * changes a second, a frame re-renders the few rows that changed, not every visible one.
 */
class TaskRow extends Component<RowProps> {
  override shouldComponentUpdate(next: RowProps): boolean {
    const p = this.props;
    return next.task !== p.task || next.worker !== p.worker || next.age !== p.age;
  }

  override render() {
    const { task: t, worker, age: shownAge } = this.props;
    return (
      <tr data-task={t.id} style={{ height: `${ROW}px` }}>
        <td class="mono">
          <a href={`#/tasks/${encodeURIComponent(t.id)}`} title={t.id}>
            {shortId(t.id)}
          </a>
        </td>
        <td title={t.spec?.name}>{t.spec?.name}</td>
        <td>
          <span class={stateClass(t.state)} data-testid="state">
            {taskStateText(t)}
          </span>
        </td>
        <td>{worker}</td>
        <td title={t.spec?.image}>{t.spec?.image}</td>
        <td class="mono">{ports(t.ports)}</td>
        <td class="num">{t.restartCount}</td>
        <td class="num">{shownAge}</td>
        <td class="muted" title={t.reason}>
          {t.reason}
        </td>
      </tr>
    );
  }
}
