import { useEffect, useMemo, useState } from "preact/hooks";
import {
  DeploymentStatus,
  type Job,
  JobStatus,
  type JobVersion,
} from "../../../gen/cube/v1/job_pb.js";
import { why } from "../api.js";
import { age, ms, percent } from "../format.js";
import { useNow, useStore } from "../hooks.js";
import { MAX_REPLICAS, parseReplicas } from "../replica-count.js";
import type { Session } from "../session.js";
import { TaskTable } from "./task-table.js";

function statusClass(status: JobStatus): string {
  return `jstatus jstatus-${(JobStatus[status] ?? "unspecified").toLowerCase()}`;
}

/** A deployment's progress: placed and healthy replicas of the new version, of those wanted. */
function Progress({ job }: { job: Job }) {
  const d = job.deployment;
  if (!d) return <span class="muted">–</span>;
  const running = d.status === DeploymentStatus.RUNNING;
  return (
    <div class="progress" title={d.statusReason}>
      <span class="bar">
        <span class="bar-alloc" style={{ width: `${percent(d.placed, d.desired)}%` }} />
        <span class="bar-used" style={{ width: `${percent(d.healthy, d.desired)}%` }} />
      </span>
      <span class="bar-text">
        v{String(d.version)}
        {d.fromVersion > 0n ? ` from v${d.fromVersion}` : ""}: {d.healthy}/{d.desired} healthy
        {running ? `, ${d.placed} placed` : ` · ${DeploymentStatus[d.status]?.toLowerCase()}`}
      </span>
    </div>
  );
}

/** Every job, live (WatchJobs), with its deployment's progress. */
export function JobsView({ session }: { session: Session }) {
  useEffect(() => session.jobs.use(), [session]);
  useStore(session.jobs);
  const now = useNow(5000);
  const { jobs } = session;
  if (jobs.unavailable) {
    return <p class="muted">This manager does not serve JobService yet: no jobs to show.</p>;
  }
  const list = [...jobs.byName.values()].sort((a, b) =>
    (a.spec?.name ?? "").localeCompare(b.spec?.name ?? ""),
  );
  return (
    <div class="panel">
      <table class="jobs">
        <thead>
          <tr>
            <th>Name</th>
            <th>Status</th>
            <th>Replicas</th>
            <th>Deployment</th>
            <th>Version</th>
            <th>Updated</th>
            <th>Why</th>
          </tr>
        </thead>
        <tbody>
          {list.map((j) => (
            <tr key={j.spec?.name} data-job={j.spec?.name}>
              <td>
                <a href={`#/jobs/${encodeURIComponent(j.spec?.name ?? "")}`}>{j.spec?.name}</a>
              </td>
              <td>
                <span class={statusClass(j.status)}>{JobStatus[j.status]}</span>
              </td>
              <td class="num" data-testid="replicas">
                {j.counts?.running ?? 0}/{j.counts?.desired ?? 0}
                {j.counts?.pending ? ` (${j.counts.pending} pending)` : ""}
              </td>
              <td style={{ minWidth: "18em" }}>
                <Progress job={j} />
              </td>
              <td>
                v{String(j.version)}
                {j.stableVersion > 0n && j.stableVersion !== j.version
                  ? ` (stable v${j.stableVersion})`
                  : ""}
              </td>
              <td>{age(ms(j.updatedAt), now)} ago</td>
              <td class="muted">{j.statusReason}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {jobs.loaded && list.length === 0 && (
        <p class="empty">
          No job yet: <code>cube job run -f job.yaml</code>.
        </p>
      )}
    </div>
  );
}

/** One job: its status and deployment, scale, its versions (revert), its replicas, live. */
export function JobDetail({ session, name }: { session: Session; name: string }) {
  useEffect(() => session.jobs.use(), [session]);
  useStore(session.jobs);
  const taskVersion = useStore(session.tasks);
  const job = session.jobs.byName.get(name);
  const [count, setCount] = useState("");
  const [error, setError] = useState<string | undefined>();
  const [confirmZero, setConfirmZero] = useState(false);
  const [versions, setVersions] = useState<readonly JobVersion[]>([]);
  const version = job?.version;
  // Versions change only with a new version or a deployment's end: asked again then.
  const deployment = job?.deployment?.status;
  useEffect(() => {
    if (version === undefined) return;
    session.api.jobs
      .listJobVersions({ name })
      .then((r) => setVersions(r.versions))
      .catch((e: unknown) => setError(why(e)));
  }, [session, name, version, deployment]);
  // The job's replicas are ordinary tasks labelled cube.job=<name>.
  const ids = useMemo(() => {
    const out: string[] = [];
    const { order, byId } = session.tasks;
    for (let i = order.length - 1; i >= 0; i--) {
      const t = byId.get(order[i] as string);
      if (t?.spec?.labels["cube.job"] === name) out.push(t.id);
    }
    return out;
  }, [taskVersion, session, name]);
  if (session.jobs.unavailable)
    return <p class="muted">This manager does not serve JobService yet.</p>;
  if (!job) return <p class="muted">{session.jobs.loaded ? `no job named ${name}` : "loading…"}</p>;
  const act = (call: Promise<unknown>) => {
    setError(undefined);
    call.catch((e: unknown) => setError(why(e)));
  };
  return (
    <div class="detail">
      <div class="detail-head">
        <h1>
          {name} <span class={statusClass(job.status)}>{JobStatus[job.status]}</span>
        </h1>
        <form
          class="actions"
          onSubmit={(e) => {
            e.preventDefault();
            const wanted = parseReplicas(count);
            if ("error" in wanted) {
              setError(wanted.error);
              return;
            }
            // Scaling to 0 stops every replica: a second click confirms it, as Stop does.
            if (wanted.count === 0) {
              setError(undefined);
              setConfirmZero(true);
              return;
            }
            act(session.api.jobs.scaleJob({ name, count: wanted.count }));
          }}
        >
          <label for="scale">Replicas</label>
          <input
            id="scale"
            type="number"
            min={0}
            max={MAX_REPLICAS}
            placeholder={String(job.spec?.count ?? 0)}
            value={count}
            onInput={(e) => {
              setCount((e.target as HTMLInputElement).value);
              setConfirmZero(false);
            }}
          />
          {confirmZero ? (
            <>
              <button
                type="button"
                class="danger"
                data-testid="confirm-scale-zero"
                onClick={() => {
                  setConfirmZero(false);
                  act(session.api.jobs.scaleJob({ name, count: 0 }));
                }}
              >
                Scale {name} to 0: stop every replica
              </button>
              <button type="button" class="quiet" onClick={() => setConfirmZero(false)}>
                Cancel
              </button>
            </>
          ) : (
            <button type="submit">Scale</button>
          )}
        </form>
      </div>
      {error && (
        <p class="error" data-testid="job-error">
          {error}
        </p>
      )}
      <p data-testid="job-replicas">
        {job.counts?.running ?? 0}/{job.counts?.desired ?? 0} replicas running,{" "}
        {job.counts?.healthy ?? 0} healthy
        {job.counts?.pending ? `, ${job.counts.pending} pending` : ""}
      </p>
      {job.statusReason && <p class="muted">{job.statusReason}</p>}
      <section class="panel">
        <h2>Deployment</h2>
        <Progress job={job} />
        {job.deployment?.statusReason && <p class="muted">{job.deployment.statusReason}</p>}
        {job.deployment?.warnings.map((warning) => (
          <p class="warning" data-testid="deployment-warning" key={warning}>
            {warning}
          </p>
        ))}
      </section>
      <section class="panel">
        <h2>Versions</h2>
        <table class="versions">
          <tbody>
            {versions.map((v) => (
              <tr key={String(v.version)}>
                <td>v{String(v.version)}</td>
                <td class="mono">{v.spec?.template?.image}</td>
                <td>{DeploymentStatus[v.deploymentStatus]?.toLowerCase()}</td>
                <td>{v.stable ? "stable" : ""}</td>
                <td class="muted">{v.statusReason}</td>
                <td>
                  {v.version !== job.version && (
                    <button
                      type="button"
                      class="quiet"
                      onClick={() => act(session.api.jobs.revertJob({ name, version: v.version }))}
                    >
                      Revert to v{String(v.version)}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section class="panel">
        <h2>Replicas</h2>
        <TaskTable ids={ids} tasks={session.tasks.byId} workers={session.workers} height="24em" />
      </section>
    </div>
  );
}
