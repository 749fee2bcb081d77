import { useMemo } from "preact/hooks";
import { WorkerStatus } from "../../../gen/cube/v1/worker_pb.js";
import { age, engineDown, ms, STATES, stateClass, stateName, workerStatusName } from "../format.js";
import { useNow, useStore } from "../hooks.js";
import type { Session } from "../session.js";
import { NodeBars } from "./node-bars.js";
import { clusterUsage, UsageChart } from "./usage-chart.js";

/** The cluster at a glance: tasks by state, the nodes and how full they are, recent usage. */
export function Overview({ session }: { session: Session }) {
  const taskVersion = useStore(session.tasks);
  const workerVersion = useStore(session.workers);
  const now = useNow(5000);
  const { tasks, workers } = session;
  // Recomputed only when a sample arrived (the workers' version), not on every task event.
  const usage = useMemo(() => clusterUsage(workers.history), [workerVersion, workers]);
  const nodes = [...workers.byId.values()];
  const ready = nodes.filter((w) => w.status === WorkerStatus.READY).length;
  return (
    <div class="overview" data-version={taskVersion}>
      <section class="cards">
        <a class="card" href="#/tasks">
          <span class="card-n" data-testid="count-total">
            {tasks.loaded ? tasks.byId.size : "…"}
          </span>
          <span class="card-label">tasks</span>
        </a>
        {STATES.map((s) => (
          <a class="card" href={`#/tasks?state=${stateName(s)}`} key={s}>
            <span class="card-n" data-testid={`count-${stateName(s).toLowerCase()}`}>
              {tasks.counts.get(s) ?? 0}
            </span>
            <span class={stateClass(s)}>{stateName(s)}</span>
          </a>
        ))}
        <a class="card" href="#/nodes">
          <span class="card-n">
            {ready}/{nodes.length}
          </span>
          <span class="card-label">nodes ready</span>
        </a>
      </section>
      <section class="panel">
        <h2>Usage since the page opened (up to 10 minutes, mean over nodes)</h2>
        <UsageChart data={usage} />
      </section>
      <section class="panel">
        <h2>Nodes</h2>
        {workers.loaded && nodes.length === 0 && (
          <p class="empty">
            No worker has joined yet: start one with <code>cube worker</code>.
          </p>
        )}
        <div class="node-grid">
          {nodes.map((w) => (
            <div class="node" key={w.id}>
              <div class="node-head">
                <strong>{w.name}</strong>
                <span class={`wstatus wstatus-${workerStatusName(w.status).toLowerCase()}`}>
                  {workerStatusName(w.status)}
                </span>
                {engineDown(w) && (
                  <span class="wstatus wstatus-down" title={engineDown(w)}>
                    engine down
                  </span>
                )}
                <span class="muted">
                  {w.taskCount} tasks · seen {age(ms(w.lastHeartbeat), now)} ago
                </span>
              </div>
              <NodeBars worker={w} />
            </div>
          ))}
        </div>
      </section>
    </div>
  );
}
