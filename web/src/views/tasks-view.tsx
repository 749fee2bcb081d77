import { useMemo, useState } from "preact/hooks";
import { STATES, stateClass, stateName } from "../format.js";
import { useStore } from "../hooks.js";
import type { Session } from "../session.js";
import { TaskTable } from "./task-table.js";

/** Every task, newest first, live; filtered by state (from the address) and by text. */
export function TasksView({ session, state }: { session: Session; state: string | undefined }) {
  const version = useStore(session.tasks);
  const [query, setQuery] = useState("");
  const { tasks, workers } = session;
  // Filtering 10,000 tasks takes well under a millisecond; it runs at most once a frame.
  const ids = useMemo(() => {
    const q = query.trim().toLowerCase();
    const out: string[] = [];
    for (let i = tasks.order.length - 1; i >= 0; i--) {
      const id = tasks.order[i] as string;
      const t = tasks.byId.get(id);
      if (!t) continue;
      if (state && stateName(t.state) !== state) continue;
      if (
        q &&
        !id.includes(q) &&
        !t.spec?.name.toLowerCase().includes(q) &&
        !t.spec?.image.toLowerCase().includes(q) &&
        !workers.name(t.workerId).toLowerCase().includes(q)
      ) {
        continue;
      }
      out.push(id);
    }
    return out;
  }, [version, state, query, tasks, workers]);
  return (
    <div>
      <div class="toolbar">
        <a class={`chip${state ? "" : " chip-on"}`} href="#/tasks">
          all <span class="chip-n">{tasks.byId.size}</span>
        </a>
        {STATES.map((s) => (
          <a
            key={s}
            class={`chip${state === stateName(s) ? " chip-on" : ""}`}
            href={`#/tasks?state=${stateName(s)}`}
          >
            <span class={stateClass(s)}>{stateName(s)}</span>{" "}
            <span class="chip-n">{tasks.counts.get(s) ?? 0}</span>
          </a>
        ))}
        <input
          class="search"
          type="search"
          placeholder="filter by id, name, image, worker"
          value={query}
          onInput={(e) => setQuery((e.target as HTMLInputElement).value)}
        />
        <span class="muted">{tasks.loaded ? `${ids.length} shown` : "loading…"}</span>
      </div>
      <TaskTable ids={ids} tasks={tasks.byId} workers={workers} />
    </div>
  );
}
