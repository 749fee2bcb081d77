/**
 * The job reconciler (manager/rules/job-reconciler.ts) as a table: a job, its replicas and a
 * time in, a plan out. Each case names the rule it checks.
 */
import test from "ava";
import { DeploymentStatus, JobStatus } from "../gen/cube/v1/job_pb.js";
import { DrainStatus } from "../gen/cube/v1/node_service_pb.js";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import {
  BACKOFF_RESET_MS,
  type JobPlan,
  type JobView,
  planJob,
  type ReplicaView,
} from "../manager/rules/job-reconciler.js";

const NOW = 1_000_000;
const MIN = 10_000; // min_healthy_time
const DEADLINE = 60_000;

function job(over: Partial<JobView> = {}): JobView {
  return {
    name: "web",
    version: 1n,
    count: 3,
    stopped: false,
    spread: true,
    maxParallel: 1,
    minHealthyMs: MIN,
    healthyDeadlineMs: DEADLINE,
    autoRevert: false,
    deployment: { version: 1n, status: DeploymentStatus.SUCCESSFUL, revert: false },
    stableVersion: 1n,
    replaceAfter: 0,
    failStreak: 0,
    ...over,
  };
}

const deploying = (version: bigint, revert = false) => ({
  deployment: { version, status: DeploymentStatus.RUNNING, revert },
});

/** Workers' scheduling states: a replica on a worker being drained moves off it. */
const SCHEDULABLE = { id: "w1", cordoned: false, drain: DrainStatus.UNSPECIFIED };
const DRAINING = { id: "w9", cordoned: true, drain: DrainStatus.DRAINING };
const PAST_DEADLINE = { id: "w9", cordoned: true, drain: DrainStatus.DEADLINE_REACHED };
/** A replica on worker `id`, schedulable. */
const on = (id: string) => ({ worker: { ...SCHEDULABLE, id } });

let order = 0n;
/** A replica: healthy long enough unless told otherwise. */
function r(id: string, over: Partial<ReplicaView> = {}): ReplicaView {
  order++;
  const createdAt = over.createdAt ?? NOW - 100_000;
  return {
    attemptAt: createdAt,
    proven: false,
    id,
    version: 1n,
    state: TaskState.RUNNING,
    stopping: false,
    restartPending: false,
    ready: true,
    readySince: NOW - MIN - 1,
    createdAt: NOW - 100_000,
    order,
    worker: SCHEDULABLE,
    reason: "",
    ...over,
  };
}
const pendingR = (id: string, over: Partial<ReplicaView> = {}) =>
  r(id, {
    state: TaskState.PENDING,
    ready: false,
    readySince: undefined,
    reason: "0/2 workers fit: 2 do not match zone = eu",
    ...over,
  });
const fresh = (id: string, over: Partial<ReplicaView> = {}) =>
  r(id, {
    ready: false,
    readySince: undefined,
    state: TaskState.SCHEDULED,
    createdAt: NOW - 1000,
    ...over,
  });
/** A replica of version 3 that is not ready. */
const unready3 = (id: string, over: Partial<ReplicaView> = {}) =>
  r(id, { version: 3n, ready: false, readySince: undefined, ...over });
/** Five replicas: the three oldest on w1, then one on w2 and one on w3. */
const crowdedOnW1 = () => [
  r("a1", on("w1")),
  r("a2", on("w1")),
  r("a3", on("w1")),
  r("b1", on("w2")),
  r("c1", on("w3")),
];
const ids = (list: readonly { id: string }[]) => list.map((x) => x.id).sort();

interface Case {
  readonly name: string;
  readonly job: JobView;
  readonly replicas: readonly ReplicaView[];
  readonly expect: (t: import("ava").ExecutionContext, plan: JobPlan) => void;
}

const CASES: Case[] = [
  {
    name: "new job: every replica created at once, deploying",
    job: job({ ...deploying(1n), stableVersion: 0n }),
    replicas: [],
    expect(t, p) {
      t.is(p.create, 3);
      t.is(p.status, JobStatus.DEPLOYING);
      t.deepEqual(p.stop, []);
    },
  },
  {
    name: "steady: count healthy replicas, nothing to do",
    job: job(),
    replicas: [r("a"), r("b"), r("c")],
    expect(t, p) {
      t.is(p.create, 0);
      t.deepEqual(p.stop, []);
      t.is(p.status, JobStatus.RUNNING);
      t.is(p.statusReason, "");
      t.deepEqual(p.counts, { running: 3, healthy: 3, pending: 0, starting: 0 });
    },
  },
  {
    name: "deployment succeeds once every replica was healthy for min_healthy_time",
    job: job({ ...deploying(1n), stableVersion: 0n }),
    replicas: [r("a"), r("b"), r("c")],
    expect(t, p) {
      t.is(p.deploymentEnds?.status, DeploymentStatus.SUCCESSFUL);
      t.is(p.status, JobStatus.RUNNING);
    },
  },
  {
    name: "healthy, but not for min_healthy_time yet: wake up when it will be",
    job: job({ ...deploying(1n), stableVersion: 0n }),
    replicas: [r("a"), r("b"), r("c", { readySince: NOW - 4000 })],
    expect(t, p) {
      t.is(p.deploymentEnds, undefined);
      t.is(p.wakeAt, NOW - 4000 + MIN);
      t.is(p.status, JobStatus.DEPLOYING);
      t.deepEqual(p.deployed, { placed: 3, healthy: 2 });
    },
  },
  {
    name: "a replica that failed for good is retired, counted and replaced",
    job: job(),
    replicas: [
      r("a"),
      r("b"),
      r("c", { state: TaskState.FAILED, ready: false, reason: "exit code 1" }),
    ],
    expect(t, p) {
      t.deepEqual(ids(p.retire), ["c"]);
      t.is(p.failed, 1);
      t.is(p.create, 1);
      t.regex(p.retire[0]?.why ?? "", /exit code 1/);
    },
  },
  {
    name: "an ended replica whose restart policy will start it again is kept",
    job: job(),
    replicas: [
      r("a"),
      r("b"),
      r("c", { state: TaskState.FAILED, ready: false, restartPending: true }),
    ],
    expect(t, p) {
      t.deepEqual(p.retire, []);
      t.is(p.create, 0);
      t.is(p.status, JobStatus.DEGRADED);
    },
  },
  {
    name: "replacing after failures waits out the back-off",
    job: job({ replaceAfter: NOW + 2000 }),
    replicas: [r("a"), r("b"), r("c", { state: TaskState.FAILED, ready: false })],
    expect(t, p) {
      t.is(p.create, 0);
      t.is(p.wakeAt, NOW + 2000);
      t.regex(p.statusReason, /back-off/);
    },
  },
  {
    // A crash loop: the failure in this very pass makes the back-off its replacement waits.
    name: "back-off grows with each failure in a row: the 3rd waits 1 s, from this failure",
    job: job({ count: 2, failStreak: 2, replaceAfter: NOW - 1 }),
    replicas: [r("a"), r("b", { state: TaskState.FAILED, ready: false, reason: "exit code 3" })],
    expect(t, p) {
      t.is(p.failed, 1);
      t.is(p.create, 0);
      t.is(p.failStreak, 3);
      t.is(p.replaceAfter, NOW + 1000);
      t.is(p.wakeAt, NOW + 1000);
      t.regex(p.statusReason, /back-off/);
    },
  },
  {
    name: "back-off: the first failure is replaced at once, the streak starts",
    job: job({ count: 2 }),
    replicas: [r("a"), r("b", { state: TaskState.FAILED, ready: false })],
    expect(t, p) {
      t.is(p.create, 1);
      t.is(p.failStreak, 1);
    },
  },
  {
    name: "back-off is kept while the job runs only a moment between crashes (RUNNING is not stable)",
    job: job({ count: 2, failStreak: 3, replaceAfter: NOW - 1 }),
    replicas: [r("a", { readySince: NOW - 2000 }), r("b", { readySince: NOW - 2000 })],
    expect(t, p) {
      t.is(p.status, JobStatus.RUNNING);
      t.is(p.failStreak, 3);
      t.is(p.replaceAfter, NOW - 1);
      t.is(p.wakeAt, NOW - 2000 + BACKOFF_RESET_MS, "a look when it would have been stable");
    },
  },
  {
    name: "back-off starts again once every replica has been ready for BACKOFF_RESET_MS",
    job: job({ count: 2, failStreak: 5, replaceAfter: NOW - 1 }),
    replicas: [r("a", { readySince: NOW - BACKOFF_RESET_MS }), r("b")],
    expect(t, p) {
      t.is(p.status, JobStatus.RUNNING);
      t.is(p.failStreak, 0);
      t.is(p.replaceAfter, 0);
    },
  },
  {
    name: "scale up: the missing replicas are created now",
    job: job({ count: 5 }),
    replicas: [r("a"), r("b"), r("c")],
    expect(t, p) {
      t.is(p.create, 2);
      t.is(p.status, JobStatus.DEGRADED);
    },
  },
  {
    name: "scale down: newest first",
    job: job({ count: 1 }),
    replicas: [r("a"), r("b"), r("c")],
    expect(t, p) {
      t.deepEqual(ids(p.stop), ["b", "c"]);
      t.regex(p.stop[0]?.why ?? "", /scaled down to 1/);
    },
  },
  {
    name: "scale down: pending ones go before running ones, older versions before the newest",
    job: job({ count: 2, version: 2n }),
    replicas: [
      r("old", { version: 1n }),
      r("a", { version: 2n }),
      r("b", { version: 2n }),
      pendingR("p", { version: 2n }),
    ],
    expect(t, p) {
      t.deepEqual(ids(p.stop), ["old", "p"]);
    },
  },
  {
    name: "scale down: a running replica that is not ready goes before ready ones",
    job: job({ count: 2 }),
    replicas: [r("a"), r("b"), fresh("sick", { createdAt: NOW - 200_000 }), r("c")],
    expect(t, p) {
      t.deepEqual(ids(p.stop), ["c", "sick"]);
    },
  },
  {
    name: "scale down keeps the spread: from the most crowded worker first, then the newest",
    job: job({ count: 3 }),
    // w1 holds three (the oldest), w2 and w3 one each: 5 → 3 takes two from w1, not the newest two.
    replicas: crowdedOnW1(),
    expect(t, p) {
      t.deepEqual(ids(p.stop), ["a2", "a3"]);
    },
  },
  {
    name: "scale down with spread off: newest first, wherever they run",
    job: job({ count: 3, spread: false }),
    replicas: crowdedOnW1(),
    expect(t, p) {
      t.deepEqual(ids(p.stop), ["b1", "c1"]);
    },
  },
  {
    name: "scale down: crowding is counted again after each pick",
    job: job({ count: 2 }),
    replicas: [
      r("a1", on("w1")),
      r("b1", on("w2")),
      r("a2", on("w1")),
      r("b2", on("w2")),
      r("c1", on("w3")),
    ],
    expect(t, p) {
      // w1 and w2 tie at 2: the newest of them (b2) goes; then w1 has the most (a2 goes); then
      // all hold one: the newest of those left (c1) goes.
      t.deepEqual(ids(p.stop), ["a2", "b2", "c1"]);
    },
  },
  {
    name: "rolling update: one old replica stopped and one new created at a time (stop-first)",
    job: job({ version: 2n, ...deploying(2n) }),
    replicas: [r("a"), r("b"), r("c")],
    expect(t, p) {
      t.deepEqual(ids(p.stop), ["a"]);
      t.is(p.create, 1);
      t.regex(p.stop[0]?.why ?? "", /replaced by version 2/);
      t.is(p.status, JobStatus.DEPLOYING);
    },
  },
  {
    name: "rolling update: nothing more while a new replica is not healthy (max_parallel 1)",
    job: job({ version: 2n, ...deploying(2n) }),
    replicas: [fresh("n", { version: 2n }), r("b"), r("c")],
    expect(t, p) {
      t.deepEqual(p.stop, []);
      t.is(p.create, 0);
      t.is(p.wakeAt, NOW - 1000 + DEADLINE);
    },
  },
  {
    name: "rolling update: the next old replica once the new one was healthy long enough",
    job: job({ version: 2n, ...deploying(2n) }),
    replicas: [r("b"), r("c"), r("n", { version: 2n })],
    expect(t, p) {
      t.deepEqual(ids(p.stop), ["b"]);
      t.is(p.create, 1);
    },
  },
  {
    name: "rolling update: max_parallel 2 replaces two at a time, unready old ones first",
    job: job({ version: 2n, ...deploying(2n), maxParallel: 2, count: 4 }),
    replicas: [r("a"), r("b"), r("c"), r("d", { ready: false, readySince: undefined })],
    expect(t, p) {
      t.deepEqual(ids(p.stop), ["a", "d"]);
      t.is(p.create, 2);
    },
  },
  {
    name: "rolling update ends successful when only healthy new replicas are left",
    job: job({ version: 2n, ...deploying(2n) }),
    replicas: [r("x", { version: 2n }), r("y", { version: 2n }), r("z", { version: 2n })],
    expect(t, p) {
      t.is(p.deploymentEnds?.status, DeploymentStatus.SUCCESSFUL);
      t.is(p.status, JobStatus.RUNNING);
    },
  },
  {
    name: "a new replica not healthy within healthy_deadline fails the deployment; auto_revert goes back to the stable version",
    job: job({ version: 3n, ...deploying(3n), stableVersion: 2n, autoRevert: true }),
    replicas: [
      r("n", { version: 3n, ready: false, readySince: undefined, createdAt: NOW - DEADLINE }),
      r("b", { version: 2n }),
      r("c", { version: 2n }),
    ],
    expect(t, p) {
      t.is(p.deploymentEnds?.status, DeploymentStatus.FAILED);
      t.regex(p.deploymentEnds?.reason ?? "", /replica n not healthy within 60s/);
      t.is(p.revertTo, 2n);
      t.is(p.create, 0);
    },
  },
  {
    name: "a replica of the new version that was ready in this deployment and then lost contact does not fail it",
    job: job({ version: 3n, ...deploying(3n), stableVersion: 2n, autoRevert: true }),
    replicas: [
      unready3("n", { state: TaskState.UNKNOWN, createdAt: NOW - 2 * DEADLINE, proven: true }),
      r("b", { version: 2n }),
      r("c", { version: 2n }),
    ],
    expect(t, p) {
      t.is(p.deploymentEnds, undefined);
      t.is(p.revertTo, undefined);
    },
  },
  {
    name: "a replica whose worker lost contact before it was ever ready does not fail the deployment while UNKNOWN",
    job: job({ version: 3n, ...deploying(3n), stableVersion: 2n, autoRevert: true }),
    replicas: [
      unready3("n", { state: TaskState.UNKNOWN, createdAt: NOW - DEADLINE }),
      r("b", { version: 2n }),
    ],
    expect(t, p) {
      t.is(p.deploymentEnds, undefined);
    },
  },
  {
    name: "a replica placed again (its worker went DOWN) gets the whole healthy_deadline from its new placement",
    job: job({ version: 3n, ...deploying(3n), stableVersion: 2n, autoRevert: true }),
    replicas: [
      unready3("n", {
        state: TaskState.SCHEDULED,
        createdAt: NOW - 2 * DEADLINE,
        attemptAt: NOW - 1000,
      }),
      r("b", { version: 2n }),
    ],
    expect(t, p) {
      t.is(p.deploymentEnds, undefined);
      t.is(p.wakeAt, NOW - 1000 + DEADLINE);
    },
  },
  {
    name: "a failed deployment without auto_revert stops rolling and leaves the old replicas",
    job: job({ version: 3n, ...deploying(3n), stableVersion: 2n }),
    replicas: [
      r("n", { version: 3n, ready: false, readySince: undefined, createdAt: NOW - DEADLINE }),
      r("b", { version: 2n }),
      r("c", { version: 2n }),
    ],
    expect(t, p) {
      t.is(p.deploymentEnds?.status, DeploymentStatus.FAILED);
      t.is(p.revertTo, undefined);
      t.deepEqual(p.stop, []);
      t.is(p.status, JobStatus.DEGRADED);
      t.regex(p.statusReason, /deployment of version 3 failed/);
    },
  },
  {
    name: "a replica of the new version that failed for good fails the deployment at once",
    job: job({ version: 3n, ...deploying(3n), stableVersion: 2n, autoRevert: true }),
    replicas: [
      r("n", { version: 3n, state: TaskState.FAILED, ready: false, reason: "health check failed" }),
      r("b", { version: 2n }),
      r("c", { version: 2n }),
    ],
    expect(t, p) {
      t.is(p.deploymentEnds?.status, DeploymentStatus.FAILED);
      t.regex(p.deploymentEnds?.reason ?? "", /replica n failed: health check failed/);
      t.is(p.revertTo, 2n);
      t.deepEqual(ids(p.retire), ["n"]);
    },
  },
  {
    name: "a revert that fails too does not revert again",
    job: job({ version: 2n, ...deploying(2n, true), stableVersion: 1n, autoRevert: true }),
    replicas: [
      r("n", { version: 2n, ready: false, readySince: undefined, createdAt: NOW - DEADLINE }),
    ],
    expect(t, p) {
      t.is(p.deploymentEnds?.status, DeploymentStatus.FAILED);
      t.is(p.revertTo, undefined);
    },
  },
  {
    name: "reverting: replicas of the failed version are replaced, unready ones first",
    job: job({ version: 2n, ...deploying(2n, true), stableVersion: 2n, autoRevert: true }),
    replicas: [
      r("v3a", { version: 3n, ready: false, readySince: undefined }),
      r("b", { version: 2n }),
      r("c", { version: 2n }),
    ],
    expect(t, p) {
      t.deepEqual(ids(p.stop), ["v3a"]);
      t.is(p.create, 1);
    },
  },
  {
    name: "a stopped job stops every replica and cancels its deployment",
    job: job({ stopped: true, ...deploying(1n) }),
    replicas: [
      r("a"),
      r("b"),
      r("c", { stopping: true, state: TaskState.COMPLETED, ready: false }),
    ],
    expect(t, p) {
      t.deepEqual(ids(p.stop), ["a", "b"]);
      t.deepEqual(p.forget, ["c"]);
      t.is(p.deploymentEnds?.status, DeploymentStatus.CANCELLED);
      t.is(p.status, JobStatus.STOPPED);
    },
  },
  {
    name: "a pending replica: the job says why, as the scheduler said it",
    job: job(),
    replicas: [r("a"), r("b"), pendingR("p")],
    expect(t, p) {
      t.is(p.status, JobStatus.DEGRADED);
      t.regex(p.statusReason, /1 replica pending: 0\/2 workers fit: 2 do not match zone = eu/);
      t.is(p.counts.pending, 1);
      t.is(p.create, 0);
    },
  },
  {
    name: "stopping replicas that ended are forgotten; those still stopping do not count",
    job: job(),
    replicas: [
      r("a"),
      r("b"),
      r("c"),
      r("s1", { stopping: true, state: TaskState.COMPLETED, ready: false }),
      r("s2", { stopping: true }),
    ],
    expect(t, p) {
      t.deepEqual(p.forget, ["s1"]);
      t.deepEqual(p.stop, []);
      t.is(p.counts.running, 3);
    },
  },
  {
    name: "drain: replicas on a draining worker get replacements first (max_parallel at a time)",
    job: job(),
    replicas: [
      r("a", { worker: DRAINING }),
      r("b", { worker: DRAINING }),
      r("c", { worker: DRAINING }),
    ],
    expect(t, p) {
      t.is(p.create, 1);
      t.deepEqual(p.stop, []);
      t.regex(p.statusReason, /3 replicas moving off draining workers/);
    },
  },
  {
    name: "drain: a leaving replica stops once its replacement was healthy long enough",
    job: job(),
    replicas: [
      r("a", { worker: DRAINING }),
      r("b", { worker: DRAINING }),
      r("c", { worker: DRAINING }),
      r("n"),
    ],
    expect(t, p) {
      t.is(p.stop.length, 1);
      t.regex(p.stop[0]?.why ?? "", /draining/);
      t.is(p.create, 1);
    },
  },
  {
    name: "drain: nothing stops while the replacement is not healthy",
    job: job(),
    replicas: [r("a", { worker: DRAINING }), r("b"), r("c"), fresh("n")],
    expect(t, p) {
      t.deepEqual(p.stop, []);
      t.is(p.create, 0);
    },
  },
  {
    name: "drain deadline: what is left on the worker is stopped now, and replaced",
    job: job(),
    replicas: [r("a", { worker: PAST_DEADLINE }), r("b"), r("c")],
    expect(t, p) {
      t.deepEqual(ids(p.stop), ["a"]);
      t.is(p.create, 1);
    },
  },
  {
    // A worker uncordoned after its drain: it takes replicas again, so none may be evicted
    // from it (that placed, evicted and made replicas again without end).
    name: "drain records on workers uncordoned since: nothing is evicted or moved, nothing made",
    job: job(),
    replicas: [
      r("a", { worker: { id: "w2", cordoned: false, drain: DrainStatus.DEADLINE_REACHED } }),
      r("b", { worker: { id: "w2", cordoned: false, drain: DrainStatus.DRAINING } }),
      r("c"),
    ],
    expect(t, p) {
      t.deepEqual(p.stop, []);
      t.is(p.create, 0);
      t.is(p.status, JobStatus.RUNNING);
      t.is(p.statusReason, "");
    },
  },
];

for (const c of CASES) {
  test(c.name, (t) => {
    c.expect(t, planJob(c.job, c.replicas, NOW));
  });
}

test("the planner is pure: the same input gives the same plan", (t) => {
  const j = job({ version: 2n, ...deploying(2n) });
  const rs = [r("a"), r("b"), r("c")];
  t.deepEqual(planJob(j, rs, NOW), planJob(j, rs, NOW));
});
