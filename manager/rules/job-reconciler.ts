/**
 * The job reconciler, a pure function: a job's desired state (version, count, update
 * strategy, deployment) and a read-only snapshot of its replicas, with the clock passed in,
 * give a plan — replicas to create, to stop, to retire, how the deployment ends, when to look
 * again — and the job's counts and status. No I/O, no clock of its own: manager/rules/job-ops.ts
 * takes the snapshot and applies the plan through the control plane and the lifecycle module,
 * so every decision here is tested by table cases (test/job-reconciler.test.ts).
 *
 * The rules, in order:
 * 1. A stopped job stops every replica.
 * 2. A replica that ended for good (past its restart policy) is retired and counts as failed;
 *    during a deployment, one of the version rolled out fails the deployment, as does one
 *    that is not ready (running, its health check passing) within healthy_deadline of its
 *    creation. With auto_revert, the job
 *    goes back to its stable version (the applier re-plans at once).
 * 3. Replicas on a draining worker ("leaving") do not count towards `count`: replacements are
 *    made start-first (at most max_parallel not yet healthy at a time), and a leaving replica
 *    is stopped only once enough healthy ones stand without it. At the drain's deadline the
 *    rest are stopped ("evicted").
 * 4. Too many: stop the surplus — those not running first (PENDING first), then those not
 *    ready, then those of an older version, then (spreading) those on the most crowded
 *    worker, then the newest. Too few: create what is missing now, or after the failure
 *    back-off when replicas keep failing: it grows with each failure in a row (0, 0.5 s, 1 s …
 *    30 s) and starts again only once every replica has been ready for BACKOFF_RESET_MS.
 * 5. A deployment replaces replicas of other versions stop-first, at most max_parallel
 *    replicas of the new version not yet healthy at a time, so running replicas never drop
 *    below count − max_parallel. It succeeds once `count` replicas of the version have been
 *    healthy for min_healthy_time and no other version is left.
 */
import { DeploymentStatus, JobStatus } from "../../gen/cube/v1/job_pb.js";
import { DrainStatus } from "../../gen/cube/v1/node_service_pb.js";
import { TaskState } from "../../gen/cube/v1/task_pb.js";

/** One replica (a task of the job) as the reconciler sees it. */
export interface ReplicaView {
  readonly id: string;
  /** The job version it runs (its `cube.job.version` label). */
  readonly version: bigint;
  readonly state: TaskState;
  /** A stop was asked for it (scaled down, replaced, stopped by a user): on its way out. */
  readonly stopping: boolean;
  /** Ended, and its restart policy will start it again (a back-off runs). */
  readonly restartPending: boolean;
  /** RUNNING, and its health check passes (RUNNING is enough when it has none). */
  readonly ready: boolean;
  /** Since when it has been ready, on the manager's clock (ms); undefined when not ready. */
  readonly readySince?: number;
  /** When it was created (ms). */
  readonly createdAt: number;
  /** When its current attempt began (ms): its latest placement, else its creation. */
  readonly attemptAt: number;
  /** It was ready during the current deployment: the healthy deadline no longer applies. */
  readonly proven: boolean;
  /** Creation order (its CREATED revision): larger is newer. */
  readonly order: bigint;
  /**
   * Its worker's scheduling state. A replica moves off a worker being drained ("leaving")
   * and is stopped at once past the drain's deadline ("evicted"), but only while the worker
   * is cordoned: a drain's record outlives an uncordon in old stores, and evicting from a
   * worker that takes new replicas would place, evict and create again without end.
   */
  readonly worker: {
    /** The worker it is placed on; "" while unplaced. */
    readonly id: string;
    readonly cordoned: boolean;
    readonly drain: DrainStatus;
  };
  /** Why it is in its state (the scheduler's reason while PENDING, the exit while ended). */
  readonly reason: string;
}

/** The job's desired state, defaults resolved. */
export interface JobView {
  readonly name: string;
  /** The version to run. */
  readonly version: bigint;
  readonly count: number;
  readonly stopped: boolean;
  /** Its replicas are spread over the workers (the version's `spread`, on by default). */
  readonly spread: boolean;
  readonly maxParallel: number;
  readonly minHealthyMs: number;
  readonly healthyDeadlineMs: number;
  readonly autoRevert: boolean;
  /** The current or last deployment. */
  readonly deployment?: {
    readonly version: bigint;
    readonly status: DeploymentStatus;
    readonly revert: boolean;
  };
  /** The last version whose deployment succeeded; 0 when none. */
  readonly stableVersion: bigint;
  /** Replicas that fill a gap left by failures are not created before this time (ms). */
  readonly replaceAfter: number;
  /** Replicas failed in a row, with no stable job in between (what the back-off grows with). */
  readonly failStreak: number;
}

/**
 * How long every replica must have been ready for the failure back-off to start again from
 * nothing: a crash loop's replicas that run a moment (the job RUNNING in between) keep it.
 */
export const BACKOFF_RESET_MS = 10_000;

/** The wait before replacing a replica after `streak` failures in a row: 0, 0.5s, 1s … 30s. */
export function replaceBackoffMs(streak: number): number {
  return streak <= 1 ? 0 : Math.min(500 * 2 ** (streak - 2), 30_000);
}

/** A replica to stop or retire, and why (the event message people read). */
export interface Retirement {
  readonly id: string;
  readonly why: string;
}

/** What to do now, and what the job looks like after it. */
export interface JobPlan {
  /** New replicas of `job.version` to create and place. */
  readonly create: number;
  /** Wanted replicas to stop (their containers stopped and removed). */
  readonly stop: readonly Retirement[];
  /** Replicas that ended for good: no longer wanted (their containers removed). */
  readonly retire: readonly Retirement[];
  /** How many of `retire` failed (ended while wanted): they count in JobCounts.failed. */
  readonly failed: number;
  /** Stopped replicas that have ended: the job no longer tracks them. */
  readonly forget: readonly string[];
  /** The deployment ends (SUCCESSFUL, FAILED or CANCELLED), with why. */
  readonly deploymentEnds?: { readonly status: DeploymentStatus; readonly reason: string };
  /** Go back to this version (auto_revert after a failed deployment): re-plan after applying. */
  readonly revertTo?: bigint;
  /** When to look again even if nothing changes (a min_healthy_time or a deadline runs out). */
  readonly wakeAt?: number;
  /** The failure back-off after this plan: failures in a row, and no replacement before. */
  readonly failStreak: number;
  readonly replaceAfter: number;
  /** Replicas by what they do, after the plan. */
  readonly counts: {
    readonly running: number;
    readonly healthy: number;
    readonly pending: number;
    readonly starting: number;
  };
  /** Replicas of the version rolled out: placed, and healthy for min_healthy_time. */
  readonly deployed: { readonly placed: number; readonly healthy: number };
  readonly status: JobStatus;
  readonly statusReason: string;
}

function finished(state: TaskState): boolean {
  return state === TaskState.COMPLETED || state === TaskState.FAILED;
}

/** Its worker is being drained (cordoned, the drain under way or past its deadline): it moves. */
function leavingOf(r: ReplicaView): boolean {
  const d = r.worker.drain;
  return r.worker.cordoned && (d === DrainStatus.DRAINING || d === DrainStatus.DEADLINE_REACHED);
}

/** Its worker's drain reached its deadline, and the worker is still cordoned: stop it now. */
function evictedOf(r: ReplicaView): boolean {
  return r.worker.cordoned && r.worker.drain === DrainStatus.DEADLINE_REACHED;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** "30s", "1.5s", "250ms": the update strategy's durations in messages. */
function ms(n: number): string {
  if (n < 1000) return `${n}ms`;
  return `${Number((n / 1000).toFixed(1))}s`;
}

/**
 * The surplus of a scale down, `k` of `staying`: those not running first (PENDING before the
 * rest), then running ones not ready, then older versions; between equals, with spreading on,
 * one from the worker holding the most replicas still staying (as Kubernetes' ReplicaSet
 * does, so a scale down keeps the spread a scale up made); then the newest. Picked one at a
 * time: each pick leaves its worker one replica fewer.
 */
function surplusOf(job: JobView, staying: readonly ReplicaView[], k: number): ReplicaView[] {
  const rank = (r: ReplicaView) =>
    r.state === TaskState.PENDING ? 0 : r.state !== TaskState.RUNNING ? 1 : r.ready ? 3 : 2;
  const older = (r: ReplicaView) => Number(r.version !== job.version ? 0 : 1);
  const perWorker = new Map<string, number>();
  for (const r of staying) {
    if (r.worker.id) perWorker.set(r.worker.id, (perWorker.get(r.worker.id) ?? 0) + 1);
  }
  const crowd = (id: string) => (job.spread && id ? (perWorker.get(id) ?? 0) : 0);
  // By tier (rank, then version), each tier's replicas by worker, newest first: a pick scans
  // the workers of its tier, not every replica (a scale down from 10,000 to 1 would be 10^8).
  const sorted = [...staying].sort(
    (a, b) => rank(a) - rank(b) || older(a) - older(b) || (b.order > a.order ? 1 : -1),
  );
  const out: ReplicaView[] = [];
  for (let start = 0; start < sorted.length && out.length < k; ) {
    const first = sorted[start] as ReplicaView;
    const byWorker = new Map<string, ReplicaView[]>();
    let end = start;
    for (; end < sorted.length; end++) {
      const r = sorted[end] as ReplicaView;
      if (rank(r) !== rank(first) || older(r) !== older(first)) break;
      const list = byWorker.get(r.worker.id);
      if (list) list.push(r);
      else byWorker.set(r.worker.id, [r]);
    }
    const heads = new Map<string, number>();
    for (let n = end - start; n > 0 && out.length < k; n--) {
      let best: { id: string; r: ReplicaView } | undefined;
      for (const [id, list] of byWorker) {
        const r = list[heads.get(id) ?? 0];
        if (!r) continue;
        if (
          !best ||
          crowd(id) - crowd(best.id) > 0 ||
          (crowd(id) === crowd(best.id) && r.order > best.r.order)
        ) {
          best = { id, r };
        }
      }
      if (!best) break;
      out.push(best.r);
      heads.set(best.id, (heads.get(best.id) ?? 0) + 1);
      if (best.id) perWorker.set(best.id, (perWorker.get(best.id) ?? 1) - 1);
    }
    start = end;
  }
  return out;
}

/** Replacement order: those not ready first, then the oldest. */
function replaceOrder(a: ReplicaView, b: ReplicaView): number {
  return Number(a.ready) - Number(b.ready) || (a.order < b.order ? -1 : a.order > b.order ? 1 : 0);
}

/** Plans one job at `now` (ms of the manager's clock). Pure. */
export function planJob(job: JobView, replicas: readonly ReplicaView[], now: number): JobPlan {
  const stop: Retirement[] = [];
  const retire: Retirement[] = [];
  const forget: string[] = [];
  let wakeAt: number | undefined;
  const wake = (at: number) => {
    wakeAt = wakeAt === undefined ? at : Math.min(wakeAt, at);
  };
  const deploying =
    job.deployment?.status === DeploymentStatus.RUNNING && job.deployment.version === job.version;

  // Who is still wanted; who ended for good.
  let live: ReplicaView[] = [];
  let failed = 0;
  let failure: string | undefined;
  for (const r of replicas) {
    if (r.stopping) {
      if (finished(r.state)) forget.push(r.id);
      continue;
    }
    if (finished(r.state) && !r.restartPending) {
      if (job.stopped) {
        retire.push({ id: r.id, why: `job ${job.name} stopped` });
        continue;
      }
      failed++;
      const what = r.state === TaskState.FAILED ? "failed" : "exited";
      retire.push({ id: r.id, why: `replica ${what}: replaced (${r.reason || "no reason"})` });
      if (deploying && r.version === job.version && failure === undefined) {
        failure = `replica ${r.id} ${what}${r.reason ? `: ${r.reason}` : ""}`;
      }
      continue;
    }
    live.push(r);
  }

  // This pass's failures count now: their replacements wait out the back-off they make.
  let failStreak = job.failStreak;
  let replaceAfter = job.replaceAfter;
  if (failed > 0) {
    failStreak += failed;
    replaceAfter = Math.max(replaceAfter, now + replaceBackoffMs(failStreak));
  }

  if (job.stopped) {
    for (const r of live) stop.push({ id: r.id, why: `job ${job.name} stopped` });
    return {
      create: 0,
      stop,
      retire,
      failed: 0,
      forget,
      failStreak: job.failStreak,
      replaceAfter: job.replaceAfter,
      deploymentEnds: deploying
        ? { status: DeploymentStatus.CANCELLED, reason: "the job was stopped" }
        : undefined,
      counts: { running: 0, healthy: 0, pending: 0, starting: 0 },
      deployed: { placed: 0, healthy: 0 },
      status: JobStatus.STOPPED,
      statusReason:
        stop.length + replicas.filter((r) => r.stopping && !finished(r.state)).length > 0
          ? "stopping"
          : "",
    };
  }

  // A drain past its deadline: stop at once.
  live = live.filter((r) => {
    if (!evictedOf(r)) return true;
    stop.push({ id: r.id, why: "its worker's drain reached its deadline" });
    return false;
  });

  /** Healthy for min_healthy_time (and when it will be, if it is ready but not yet long enough). */
  const healthy = (r: ReplicaView): boolean => {
    if (!r.ready || r.readySince === undefined) return false;
    const at = r.readySince + job.minHealthyMs;
    if (at <= now) return true;
    wake(at);
    return false;
  };

  // The deployment fails on a replica of its version that failed, or that was not healthy in time.
  if (deploying && failure === undefined) {
    for (const r of live) {
      // Ready counts: min_healthy_time only paces the rollout. A replica that was ready in
      // this deployment has shown the version works; one whose worker lost contact is the
      // worker's matter (the down grace replaces it): neither fails the deployment.
      if (r.version !== job.version || r.ready || r.proven) continue;
      if (r.state === TaskState.UNKNOWN) continue;
      // Timed from its current attempt: a replica placed again (its worker went DOWN, or it
      // restarted) gets the whole deadline again.
      const deadline = r.attemptAt + job.healthyDeadlineMs;
      if (deadline <= now) {
        failure = `replica ${r.id} not healthy within ${ms(job.healthyDeadlineMs)}`;
        break;
      }
      wake(deadline);
    }
  }
  let rolling = deploying;
  let deploymentEnds: JobPlan["deploymentEnds"];
  if (failure !== undefined) {
    rolling = false;
    deploymentEnds = { status: DeploymentStatus.FAILED, reason: failure };
    const stable = job.stableVersion;
    if (job.autoRevert && !job.deployment?.revert && stable > 0n && stable !== job.version) {
      // Re-planned at once against the stable version: nothing more to decide on this one.
      return {
        create: 0,
        stop,
        retire,
        failed,
        forget,
        failStreak,
        replaceAfter,
        deploymentEnds,
        revertTo: stable,
        counts: countsOf(live),
        deployed: deployedOf(job, live, healthy),
        status: JobStatus.DEPLOYING,
        statusReason: `deployment of version ${job.version} failed (${failure}): reverting to version ${stable}`,
      };
    }
  }

  let staying = live.filter((r) => !leavingOf(r));
  const leaving = live.filter(leavingOf);
  const n = job.count;

  // Too many: the surplus goes, in surplus order.
  if (staying.length > n) {
    const surplus = surplusOf(job, staying, staying.length - n);
    const gone = new Set(surplus.map((r) => r.id));
    for (const r of surplus) stop.push({ id: r.id, why: `scaled down to ${n}` });
    staying = staying.filter((r) => !gone.has(r.id));
  }
  const shortfall = n - staying.length;
  // Too few: what is gone is made again now; what is leaving, start-first within the budget.
  // (Leaving replicas beyond the shortfall, after a scale down, simply stop below.)
  let create = 0;
  const gone = shortfall - leaving.length;
  const backingOff = gone > 0 && now < replaceAfter;
  if (backingOff) wake(replaceAfter);
  else if (gone > 0) create += gone;
  const notHealthyCurrent = staying.filter((r) => r.version === job.version && !healthy(r)).length;
  let budget = job.maxParallel - notHealthyCurrent - create;
  const drainNeed = Math.min(leaving.length, shortfall);
  if (drainNeed > 0 && budget > 0) {
    const more = Math.min(drainNeed, budget);
    create += more;
    budget -= more;
  }
  // A leaving replica stops once enough healthy ones stand without it.
  if (leaving.length > 0) {
    const healthyStaying = staying.filter(healthy).length;
    const stoppable = Math.min(leaving.length, healthyStaying - (n - leaving.length));
    if (stoppable > 0) {
      for (const r of [...leaving].sort(replaceOrder).slice(0, stoppable)) {
        stop.push({ id: r.id, why: "moved off its draining worker" });
      }
    }
  }

  // The rolling update: stop-first, within the budget.
  if (rolling) {
    const old = staying.filter((r) => r.version !== job.version).sort(replaceOrder);
    for (const r of old.slice(0, Math.max(0, budget))) {
      stop.push({ id: r.id, why: `replaced by version ${job.version}` });
      create++;
    }
    const oldLeft = live.some((r) => r.version !== job.version);
    const current = staying.filter((r) => r.version === job.version);
    if (
      !oldLeft &&
      create === 0 &&
      leaving.length === 0 &&
      current.length === n &&
      current.every(healthy)
    ) {
      deploymentEnds = {
        status: DeploymentStatus.SUCCESSFUL,
        reason: `${plural(n, "replica")} of version ${job.version} healthy`,
      };
      rolling = false;
    }
  }

  const stopped = new Set(stop.map((s) => s.id));
  const after = live.filter((r) => !stopped.has(r.id));
  const moving = leaving.filter((r) => !stopped.has(r.id)).length;
  const counts = countsOf(after);
  const currentReady = after.filter((r) => r.version === job.version && r.ready).length;
  const pendingReason = after.find((r) => r.state === TaskState.PENDING)?.reason;
  const reasons: string[] = [];
  let status: JobStatus;
  if (rolling) {
    status = JobStatus.DEPLOYING;
    const d = deployedOf(job, after, healthy);
    reasons.push(`rolling out version ${job.version}: ${d.healthy}/${n} healthy`);
  } else if (
    failure === undefined &&
    create === 0 &&
    moving === 0 &&
    after.length === n &&
    currentReady === n &&
    after.every((r) => r.version === job.version)
  ) {
    status = JobStatus.RUNNING;
  } else {
    status = JobStatus.DEGRADED;
    if (failure !== undefined) {
      reasons.push(`deployment of version ${job.version} failed: ${failure}`);
    } else if (job.deployment?.status === DeploymentStatus.FAILED) {
      reasons.push(`the deployment of version ${job.deployment.version} failed`);
    }
    reasons.push(`${currentReady}/${n} replicas of version ${job.version} healthy`);
  }
  if (counts.pending > 0) {
    reasons.push(
      `${plural(counts.pending, "replica")} pending${pendingReason ? `: ${pendingReason}` : ""}`,
    );
  }
  if (backingOff) reasons.push("replacing failed replicas after a back-off");
  // The back-off starts again once every replica has been ready a while (not merely RUNNING
  // for a moment between the crashes of a loop).
  if (failStreak > 0 && status === JobStatus.RUNNING) {
    const stableAt = Math.max(...after.map((r) => (r.readySince ?? now) + BACKOFF_RESET_MS));
    if (stableAt <= now) {
      failStreak = 0;
      replaceAfter = 0;
    } else wake(stableAt);
  }
  if (moving > 0) reasons.push(`${plural(moving, "replica")} moving off draining workers`);
  return {
    create,
    stop,
    retire,
    failed,
    forget,
    failStreak,
    replaceAfter,
    deploymentEnds,
    wakeAt,
    counts,
    deployed: deployedOf(job, after, healthy),
    status,
    statusReason: reasons.join("; "),
  };
}

function countsOf(live: readonly ReplicaView[]): JobPlan["counts"] {
  let running = 0;
  let healthy = 0;
  let pending = 0;
  let starting = 0;
  for (const r of live) {
    if (r.state === TaskState.RUNNING) running++;
    if (r.ready) healthy++;
    if (r.state === TaskState.PENDING) pending++;
    if (r.state === TaskState.SCHEDULED) starting++;
  }
  return { running, healthy, pending, starting };
}

function deployedOf(
  job: JobView,
  live: readonly ReplicaView[],
  healthy: (r: ReplicaView) => boolean,
): JobPlan["deployed"] {
  let placed = 0;
  let ok = 0;
  for (const r of live) {
    if (r.version !== job.version) continue;
    if (r.state === TaskState.SCHEDULED || r.state === TaskState.RUNNING) placed++;
    if (healthy(r)) ok++;
  }
  return { placed, healthy: ok };
}
