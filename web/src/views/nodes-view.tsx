import { useEffect, useMemo, useState } from "preact/hooks";
import { DrainStatus } from "../../../gen/cube/v1/node_service_pb.js";
import { WorkerStatus } from "../../../gen/cube/v1/worker_pb.js";
import { unimplemented, why } from "../api.js";
import { CoalescedCall } from "../coalesced-call.js";
import { age, engineDown, ms, workerStatusName } from "../format.js";
import { useNow, useStore } from "../hooks.js";
import type { Session } from "../session.js";
import { NodeBars } from "./node-bars.js";

/**
 * The workers, live (WatchWorkers), with their scheduling state — cordoned, drain progress —
 * from the same stream (the manager sends a worker again when it is cordoned, uncordoned or
 * its drain moves on, from the CLI too); cordon, drain and uncordon buttons. ListNodes is
 * asked only to learn whether this manager serves NodeService (when the view opens, and after
 * each of the page's own actions, to show their errors).
 */
export function NodesView({ session }: { session: Session }) {
  useStore(session.workers);
  const now = useNow(2000);
  const workers = [...session.workers.byId.values()];
  const [served, setServed] = useState(true);
  const [error, setError] = useState<string | undefined>();
  const [asked, setAsked] = useState(0);
  // Draining moves every task off a node: a second click confirms it.
  const [confirmDrain, setConfirmDrain] = useState<string | undefined>();
  const listNodes = useMemo(
    () =>
      new CoalescedCall(async (signal) => {
        try {
          await session.api.nodes.listNodes({}, { signal });
          setServed(true);
          setError(undefined);
        } catch (e: unknown) {
          if (signal.aborted) return;
          if (unimplemented(e)) setServed(false);
          else setError(why(e));
        }
      }),
    [session],
  );
  useEffect(() => () => listNodes.close(), [listNodes]);
  useEffect(() => listNodes.request(), [listNodes, asked]);
  const act = (what: "cordon" | "uncordon" | "drain", name: string) => {
    setError(undefined);
    const call =
      what === "cordon"
        ? session.api.nodes.cordonNode({ name })
        : what === "uncordon"
          ? session.api.nodes.uncordonNode({ name })
          : session.api.nodes.drainNode({ name });
    call.then(
      () => setAsked((n) => n + 1),
      (e: unknown) => setError(why(e)),
    );
  };
  return (
    <div>
      {error && <p class="error">{error}</p>}
      {!served && (
        <p class="muted">
          This manager does not serve NodeService: cordon and drain are not available.
        </p>
      )}
      <div class="panel">
        <table class="nodes">
          <thead>
            <tr>
              <th>Name</th>
              <th>Status</th>
              <th>Scheduling</th>
              <th>Usage (allocated · measured)</th>
              <th>Tasks</th>
              <th title="how long the worker's agent process has run">Agent up</th>
              <th>Last seen</th>
              <th>Version</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {workers.map((w) => {
              const node = session.workers.scheduling.get(w.id);
              const drain = node?.drain;
              const draining = drain?.status === DrainStatus.DRAINING;
              return (
                <tr key={w.id} data-node={w.name}>
                  <td>
                    <strong>{w.name}</strong>
                    <div class="mono muted">{w.id.slice(0, 12)}</div>
                    <div class="muted">
                      {Object.entries(w.labels)
                        .map(([k, v]) => `${k}=${v}`)
                        .join(" ")}
                    </div>
                  </td>
                  <td>
                    <span class={`wstatus wstatus-${workerStatusName(w.status).toLowerCase()}`}>
                      {workerStatusName(w.status)}
                    </span>
                    {engineDown(w) && <div class="error">engine down: {engineDown(w)}</div>}
                  </td>
                  <td data-testid="scheduling">
                    {!node ? (
                      <span class="muted">–</span>
                    ) : node.cordoned ? (
                      <span class="wstatus wstatus-cordoned">cordoned</span>
                    ) : (
                      <span class="muted">schedulable</span>
                    )}
                    {drain && drain.status !== DrainStatus.UNSPECIFIED && (
                      <div class="muted">
                        drain {DrainStatus[drain.status]?.toLowerCase().replace("_", " ")}:{" "}
                        {drain.tasksLeft}/{drain.tasksTotal} left
                      </div>
                    )}
                  </td>
                  <td style={{ minWidth: "22em" }}>
                    <NodeBars worker={w} />
                  </td>
                  <td class="num">{w.taskCount}</td>
                  <td data-testid="agent-up">
                    {w.status === WorkerStatus.READY && w.agentStartedAt
                      ? age(ms(w.agentStartedAt), now)
                      : "–"}
                  </td>
                  <td>{age(ms(w.lastHeartbeat), now)} ago</td>
                  <td class="muted">{w.version}</td>
                  <td>
                    <span class="actions">
                      {served && node && !node.cordoned && (
                        <button type="button" onClick={() => act("cordon", w.id)}>
                          Cordon
                        </button>
                      )}
                      {served && node?.cordoned && (
                        <button type="button" onClick={() => act("uncordon", w.id)}>
                          Uncordon
                        </button>
                      )}
                      {served && node && !draining && confirmDrain !== w.id && (
                        <button type="button" class="quiet" onClick={() => setConfirmDrain(w.id)}>
                          Drain…
                        </button>
                      )}
                      {served && node && !draining && confirmDrain === w.id && (
                        <button
                          type="button"
                          class="danger"
                          onClick={() => {
                            setConfirmDrain(undefined);
                            act("drain", w.id);
                          }}
                        >
                          Drain {w.name}: move its tasks off
                        </button>
                      )}
                    </span>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {session.workers.loaded && workers.length === 0 && (
        <p class="empty">No worker has joined yet.</p>
      )}
    </div>
  );
}
