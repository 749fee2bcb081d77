/**
 * Jobs, applied: the JobService's operations (apply, scale, stop, revert) and the loop that
 * keeps each job at its desired state. A reconcile takes a read-only snapshot of a job and its
 * replicas, asks the pure planner (job-reconciler.ts) what to do, and applies the plan through
 * the control plane: replicas are created with `cp.createTask` and placed like any task
 * (rules/placing.ts, with the job's constraints and spreading), stopped with `requestStop`
 * (the lifecycle's builders), and the job's own state is stored in the same group commit as
 * the task changes it decided, so a manager killed mid-deployment resumes where it was.
 *
 * A reconcile runs after every change of a replica (coalesced to one per job per turn), after
 * each operation, when a min_healthy_time or deadline runs out (a timer on the control plane's
 * clock), and once for every job after the state is loaded.
 */

import { randomBytes } from "node:crypto";
import { create, equals } from "@bufbuild/protobuf";
import { durationMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { JobRecordSchema, JobVersionRecordSchema } from "../../gen/cube/store/v1/jobs_pb.js";
import {
  ConstraintSchema,
  type Deployment,
  DeploymentSchema,
  DeploymentStatus,
  type Job,
  JobCountsSchema,
  JobSchema,
  type JobSpec,
  JobStatus,
  type JobVersion,
  JobVersionSchema,
  UpdateStrategySchema,
} from "../../gen/cube/v1/job_pb.js";
import { DrainStatus } from "../../gen/cube/v1/node_service_pb.js";
import { DesiredState, type Task, TaskSpecSchema } from "../../gen/cube/v1/task_pb.js";
import { isReady } from "../../lib/task-state.js";
import { timestampLiteral } from "../../lib/timestamp.js";
import type { ControlPlane } from "../core/control-plane.js";
import { type JobEntry, jobOf } from "../core/job-table.js";
import { type JobPlan, type JobView, planJob, type ReplicaView } from "./job-reconciler.js";
import { placeNew } from "./placing.js";
import { revertWarnings } from "./revert-warnings.js";
import { requestStop } from "./task-ops.js";
import {
  UPDATE_DEFAULTS,
  validateCount,
  validateJobName,
  validateJobSpec,
} from "./validate-job.js";
import { noteProgress } from "./worker-liveness.js";

/** What decides where a replica runs besides the template: constraints and spread. */
function sameVersion(a: JobSpec, b: JobSpec): boolean {
  return (
    a.template !== undefined &&
    b.template !== undefined &&
    equals(TaskSpecSchema, a.template, b.template) &&
    a.constraints.length === b.constraints.length &&
    a.constraints.every((c, i) => equals(ConstraintSchema, c, b.constraints[i] as typeof c)) &&
    (a.spread ?? true) === (b.spread ?? true)
  );
}

/** The job, or NOT_FOUND naming it. */
export function findJob(cp: ControlPlane, name: string): JobEntry {
  validateJobName(name);
  const job = cp.jobs.get(name);
  if (!job) throw new ConnectError(`name: job "${name}" not found`, Code.NotFound);
  return job;
}

/** The job as answers show it: the current revision stamped on. */
export function jobSnapshot(cp: ControlPlane, job: JobEntry): Job {
  return { ...job.job, revision: cp.revision };
}

/** Its replicas, oldest first: those wanted, and those still stopping. */
export function jobTasks(job: JobEntry): Task[] {
  return [...job.members.values()]
    .sort((a, b) => (a.createdRevision < b.createdRevision ? -1 : 1))
    .map((e) => e.task);
}

/** What ApplyJob did. */
export interface Applied {
  readonly job: Job;
  readonly newVersion: boolean;
  readonly changed: boolean;
}

/**
 * Creates or updates a job (see ApplyJob in job_service.proto). Validated first: a bad spec
 * changes nothing. Resolves once the change is durable.
 */
export async function applyJob(cp: ControlPlane, input: JobSpec | undefined): Promise<Applied> {
  const spec = validateJobSpec(input);
  const now = cp.clock.now();
  let job = cp.jobs.get(spec.name);
  let newVersion = false;
  let changed = true;
  if (!job) {
    job = cp.jobs.add(
      create(JobSchema, {
        spec,
        version: 1n,
        status: JobStatus.DEPLOYING,
        counts: create(JobCountsSchema, { desired: spec.count }),
        createdAt: timestampLiteral(now),
        updatedAt: timestampLiteral(now),
      }),
    );
    putVersion(
      cp,
      job,
      create(JobVersionSchema, { version: 1n, spec, createdAt: timestampLiteral(now) }),
    );
    startDeployment(cp, job, 1n, 0n, false, now);
    newVersion = true;
  } else if (!sameVersion(job.spec, spec)) {
    const version = [...job.versions.keys()].reduce((a, b) => (a > b ? a : b), 0n) + 1n;
    const from = job.job.version;
    job.stopped = false;
    job.job = { ...job.job, spec, version, updatedAt: timestampLiteral(now) };
    putVersion(
      cp,
      job,
      create(JobVersionSchema, { version, spec, createdAt: timestampLiteral(now) }),
    );
    startDeployment(cp, job, version, from, false, now);
    newVersion = true;
  } else if (job.stopped) {
    job.stopped = false;
    job.job = {
      ...job.job,
      spec: { ...job.spec, count: spec.count, update: spec.update },
      updatedAt: timestampLiteral(now),
    };
    startDeployment(cp, job, job.job.version, job.job.version, false, now);
  } else if (job.spec.count !== spec.count || !equalUpdate(job.spec, spec)) {
    job.job = {
      ...job.job,
      spec: { ...job.spec, count: spec.count, update: spec.update },
      updatedAt: timestampLiteral(now),
    };
  } else {
    changed = false;
  }
  if (changed) {
    storeJob(cp, job);
    reconcileJob(cp, job);
  }
  await cp.committed();
  return { job: jobSnapshot(cp, job), newVersion, changed };
}

function equalUpdate(a: JobSpec, b: JobSpec): boolean {
  const empty = create(UpdateStrategySchema);
  return equals(UpdateStrategySchema, a.update ?? empty, b.update ?? empty);
}

/** Sets the count (ScaleJob). FAILED_PRECONDITION for a stopped job. */
export async function scaleJob(cp: ControlPlane, name: string, count: number): Promise<Job> {
  const job = findJob(cp, name);
  validateCount(count);
  if (job.stopped) {
    throw new ConnectError(
      `job "${name}" is stopped: apply it to start it again`,
      Code.FailedPrecondition,
    );
  }
  if (job.spec.count !== count) {
    job.job = {
      ...job.job,
      spec: { ...job.spec, count },
      updatedAt: timestampLiteral(cp.clock.now()),
    };
    storeJob(cp, job);
    reconcileJob(cp, job);
  }
  await cp.committed();
  return jobSnapshot(cp, job);
}

/** Stops every replica (StopJob); stopping a stopped job changes nothing. */
export async function stopJob(cp: ControlPlane, name: string): Promise<Job> {
  const job = findJob(cp, name);
  if (!job.stopped) {
    job.stopped = true;
    job.job = { ...job.job, updatedAt: timestampLiteral(cp.clock.now()) };
    storeJob(cp, job);
    reconcileJob(cp, job);
  }
  await cp.committed();
  return jobSnapshot(cp, job);
}

/**
 * Goes back to `version` (RevertJob): its template, constraints and spread, the count and update
 * strategy as they are, rolled out by the rolling rules. NOT_FOUND naming `version` when the job
 * has none such; reverting to the version it runs changes nothing.
 */
export async function revertJob(cp: ControlPlane, name: string, version: bigint): Promise<Job> {
  const job = findJob(cp, name);
  const target = job.versions.get(version);
  if (!target?.spec) {
    throw new ConnectError(
      `version: job "${name}" has no version ${version} (it has 1-${job.versions.size})`,
      Code.NotFound,
    );
  }
  if (job.stopped) {
    throw new ConnectError(
      `job "${name}" is stopped: apply it to start it again`,
      Code.FailedPrecondition,
    );
  }
  if (version !== job.job.version) {
    revertTo(cp, job, version, cp.clock.now());
    storeJob(cp, job);
    reconcileJob(cp, job);
  }
  await cp.committed();
  return jobSnapshot(cp, job);
}

/** The job runs `version` again (count and update as they are), with a new (revert) deployment. */
function revertTo(cp: ControlPlane, job: JobEntry, version: bigint, now: number): void {
  const spec = job.versions.get(version)?.spec as JobSpec;
  const from = job.job.version;
  const warnings = revertWarnings(job.job.spec, spec, from, version);
  if (warnings.length > 0) cp.logger.warn({ job: job.name, version, from, warnings }, "revert");
  job.job = {
    ...job.job,
    spec: { ...spec, count: job.spec.count, update: job.spec.update },
    version,
    updatedAt: timestampLiteral(now),
  };
  startDeployment(cp, job, version, from, true, now, warnings);
}

/** Ends the deployment under way (CANCELLED) and starts one of `version`. */
function startDeployment(
  cp: ControlPlane,
  job: JobEntry,
  version: bigint,
  from: bigint,
  revert: boolean,
  now: number,
  warnings: string[] = [],
): void {
  job.proven.clear();
  job.provenDirty = true;
  const current = job.job.deployment;
  if (current?.status === DeploymentStatus.RUNNING) {
    endDeployment(
      cp,
      job,
      DeploymentStatus.CANCELLED,
      revert ? `reverted to version ${version}` : `superseded by version ${version}`,
      now,
    );
  }
  const deployment: Deployment = create(DeploymentSchema, {
    version,
    fromVersion: from,
    status: DeploymentStatus.RUNNING,
    revert,
    startedAt: timestampLiteral(now),
    desired: job.spec.count,
    warnings,
  });
  job.job = { ...job.job, deployment };
  markVersion(cp, job, version, DeploymentStatus.RUNNING, "");
}

function endDeployment(
  cp: ControlPlane,
  job: JobEntry,
  status: DeploymentStatus,
  reason: string,
  now: number,
): void {
  const d = job.job.deployment;
  if (!d) return;
  job.job = {
    ...job.job,
    deployment: { ...d, status, statusReason: reason, finishedAt: timestampLiteral(now) },
    updatedAt: timestampLiteral(now),
  };
  if (status === DeploymentStatus.SUCCESSFUL) job.job = { ...job.job, stableVersion: d.version };
  markVersion(cp, job, d.version, status, reason);
}

function markVersion(
  cp: ControlPlane,
  job: JobEntry,
  version: bigint,
  status: DeploymentStatus,
  reason: string,
): void {
  const v = job.versions.get(version);
  if (!v) return;
  putVersion(cp, job, {
    ...v,
    deploymentStatus: status,
    statusReason: reason,
    stable: v.stable || status === DeploymentStatus.SUCCESSFUL,
  });
}

function putVersion(cp: ControlPlane, job: JobEntry, version: JobVersion): void {
  job.versions.set(version.version, version);
  cp.store.putJobVersion(create(JobVersionRecordSchema, { version }));
  cp.afterCommit(() => cp.jobs.feed.notify(job.name));
}

function storeJob(cp: ControlPlane, job: JobEntry): void {
  // Only the replicas still members: a proven one that has gone needs no record.
  const provenTaskIds = [...job.proven].filter((id) => job.members.has(id));
  cp.store.putJob(create(JobRecordSchema, { job: job.job, stopped: job.stopped, provenTaskIds }));
  job.provenDirty = false;
  cp.afterCommit(() => cp.jobs.feed.notify(job.name));
}

/** The job's desired state for the planner, defaults resolved. */
export function jobView(job: JobEntry): JobView {
  const u = job.spec.update;
  const d = job.job.deployment;
  return {
    name: job.name,
    version: job.job.version,
    count: job.spec.count,
    stopped: job.stopped,
    spread: job.spec.spread ?? true,
    maxParallel: u?.maxParallel || UPDATE_DEFAULTS.maxParallel,
    minHealthyMs: u?.minHealthyTime ? durationMs(u.minHealthyTime) : UPDATE_DEFAULTS.minHealthyMs,
    healthyDeadlineMs: u?.healthyDeadline
      ? durationMs(u.healthyDeadline)
      : UPDATE_DEFAULTS.healthyDeadlineMs,
    autoRevert: u?.autoRevert ?? false,
    deployment: d ? { version: d.version, status: d.status, revert: d.revert } : undefined,
    stableVersion: job.job.stableVersion,
    replaceAfter: job.replaceAfter,
    failStreak: job.failStreak,
  };
}

/** The job's replicas as the planner sees them, keeping `readySince` in step on the way. */
export function replicaViews(cp: ControlPlane, job: JobEntry, now: number): ReplicaView[] {
  const out: ReplicaView[] = [];
  for (const entry of job.members.values()) {
    const t = entry.task;
    const ready = isReady(t);
    // Its worker's drain: replicas there move (start-first), or stop now past the deadline.
    const w = t.workerId ? cp.workers.get(t.workerId) : undefined;
    // ready_at is stored with the task, so a restarted manager keeps counting from it; a
    // task recorded before the field existed counts from when this manager first saw it ready.
    let since = ready && t.readyAt ? timestampMs(t.readyAt) : job.readySince.get(t.id);
    if (ready && since === undefined) {
      since = now;
      job.readySince.set(t.id, now);
    } else if (!ready && since !== undefined) {
      since = undefined;
      job.readySince.delete(t.id);
    }
    if (ready && !job.proven.has(t.id)) {
      job.proven.add(t.id);
      job.provenDirty = true;
    }
    const createdAt = t.createdAt ? timestampMs(t.createdAt) : now;
    out.push({
      id: t.id,
      version: jobOf(t)?.version ?? 0n,
      state: t.state,
      stopping: t.desiredState === DesiredState.STOPPED,
      restartPending: entry.restartTimer !== undefined,
      ready,
      readySince: since,
      createdAt,
      // Its healthy deadline counts from its latest placement, but not from before this
      // manager watched (a restart, replicas' news still in their workers' outboxes) nor
      // through a stall of the manager's own (a SIGSTOP): neither is the version's failure.
      attemptAt: Math.max(
        t.scheduledAt ? Math.max(createdAt, timestampMs(t.scheduledAt)) : createdAt,
        job.watchedSince,
        cp.workers.loop.lastStallEndMs,
      ),
      proven: job.proven.has(t.id),
      order: entry.createdRevision,
      worker: {
        id: t.workerId,
        cordoned: w?.cordoned ?? false,
        drain: w?.drain?.status ?? DrainStatus.UNSPECIFIED,
      },
      reason: t.reason,
    });
  }
  return out;
}

/** Queues a reconcile of `job` (at most one per job per turn). */
export function queueReconcile(cp: ControlPlane, job: JobEntry): void {
  if (job.queued || cp.closed) return;
  job.queued = true;
  setImmediate(() => {
    job.queued = false;
    if (!cp.closed && cp.jobs.get(job.name) === job) reconcileJob(cp, job);
  });
}

/** Plans the job now and applies the plan (again after an automatic revert). */
export function reconcileJob(cp: ControlPlane, job: JobEntry): void {
  const now = cp.clock.now();
  for (let round = 0; round < 3; round++) {
    const plan = planJob(jobView(job), replicaViews(cp, job, now), now);
    applyPlan(cp, job, plan, now);
    if (plan.revertTo === undefined) return;
  }
}

function applyPlan(cp: ControlPlane, job: JobEntry, plan: JobPlan, now: number): void {
  const before = job.job;
  for (const id of plan.forget) job.forget(id);
  for (const { id, why } of [...plan.retire, ...plan.stop]) {
    const entry = job.members.get(id);
    if (entry && entry.task.desiredState !== DesiredState.STOPPED) requestStop(cp, entry, why);
  }
  let failed = before.counts?.failed ?? 0;
  failed += plan.failed;
  job.failStreak = plan.failStreak;
  job.replaceAfter = plan.replaceAfter;
  for (let i = 0; i < plan.create; i++) createReplica(cp, job, job.job.version);
  if (plan.deploymentEnds) {
    endDeployment(cp, job, plan.deploymentEnds.status, plan.deploymentEnds.reason, now);
  }
  if (plan.revertTo !== undefined) revertTo(cp, job, plan.revertTo, now);
  const d = job.job.deployment;
  const after: Job = {
    ...job.job,
    status: plan.status,
    statusReason: plan.statusReason,
    counts: create(JobCountsSchema, {
      desired: job.stopped ? 0 : job.spec.count,
      running: plan.counts.running,
      healthy: plan.counts.healthy,
      pending: plan.counts.pending,
      starting: plan.counts.starting,
      failed,
    }),
    // A deployment's figures are its own: they move while it runs (and are final when it
    // ends, in this very pass), not after (a scale changes the job's counts, not them).
    deployment:
      d &&
      d.version === job.job.version &&
      plan.revertTo === undefined &&
      (d.status === DeploymentStatus.RUNNING || plan.deploymentEnds !== undefined)
        ? {
            ...d,
            desired: job.spec.count,
            placed: plan.deployed.placed,
            healthy: plan.deployed.healthy,
          }
        : d,
  };
  job.job = after;
  if (!equals(JobSchema, before, after) || job.provenDirty) storeJob(cp, job);
  // The next look, when a min_healthy_time or a deadline runs out.
  cp.clearTimer(job.timer);
  job.timer = undefined;
  if (plan.wakeAt !== undefined && !job.stopped) {
    job.timer = cp.timer(Math.max(0, plan.wakeAt - now), () => {
      job.timer = undefined;
      // A stall of the manager's own is noted first, so a deadline does not count it.
      noteProgress(cp);
      reconcileJob(cp, job);
    });
  }
}

/** A new replica of `version`, created and placed (or queued) like any task. */
function createReplica(cp: ControlPlane, job: JobEntry, version: bigint): void {
  let id: string;
  do id = `${job.name}-${randomBytes(4).toString("hex")}`;
  while (cp.tasks.get(id));
  const entry = cp.createTask(id, job.replicaSpec(version));
  job.adopt(entry);
  placeNew(cp, entry);
}

/** After a load: watch every job's replicas, and reconcile each job once. */
export function resumeJobs(cp: ControlPlane): void {
  cp.jobs.onTaskChanged = (job) => queueReconcile(cp, job);
  const now = cp.clock.now();
  for (const job of cp.jobs.all()) {
    job.watchedSince = now;
    queueReconcile(cp, job);
  }
}
