/**
 * JobService through the manager harness: a control plane over a MemoryStore, scripted
 * workers on the real stream protocol, a FakeClock for min_healthy_time and deadlines.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import { DeploymentStatus, type JobSpecSchema, JobStatus } from "../gen/cube/v1/job_pb.js";
import { JobService } from "../gen/cube/v1/job_service_pb.js";
import { DesiredState, HealthStatus, type Task, TaskState } from "../gen/cube/v1/task_pb.js";
import { AssignmentAction } from "../gen/cube/v1/worker_service_pb.js";
import { FakeClock } from "./fake-clock.js";
import { eventually, FakeWorker, type Harness, harness, spec } from "./manager-harness.js";

type JobInit = MessageInitShape<typeof JobSpecSchema>;

function jobSpec(init: Partial<JobInit> = {}): JobInit {
  return {
    name: "web",
    template: spec({ args: ["v1"] }),
    count: 3,
    update: {
      maxParallel: 1,
      minHealthyTime: durationFromMs(1000),
      healthyDeadline: durationFromMs(30_000),
    },
    ...init,
  } as JobInit;
}

interface Setup {
  h: Harness;
  clock: FakeClock;
  jobs: ReturnType<typeof createClient<typeof JobService>>;
  workers: FakeWorker[];
}

async function setup(
  t: ExecutionContext,
  workerCount = 2,
  labels: Record<string, string>[] = [],
): Promise<Setup> {
  const clock = new FakeClock();
  // Fake workers send no heartbeat on the fake clock: keep them alive however far it moves.
  const h = await harness(t, { clock, heartbeatTimeoutMs: 3_600_000 });
  const workers: FakeWorker[] = [];
  for (let i = 0; i < workerCount; i++) {
    const w = new FakeWorker(`w${i + 1}`, { labels: labels[i] });
    await w.connect(h.transport);
    workers.push(w);
  }
  return { h, clock, jobs: createClient(JobService, h.transport), workers };
}

/** The job's replicas wanted running (not being stopped). */
async function replicas(s: Setup, name = "web"): Promise<Task[]> {
  const { tasks } = await s.jobs.getJob({ name });
  return tasks.filter((x) => x.desiredState === DesiredState.RUNNING);
}

/** Lets the queued reconciles (setImmediate) and the stream round trips run. */
async function settle(ms = 30): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

test("apply: count replicas placed and running, spread over the workers, job RUNNING once healthy", async (t) => {
  const s = await setup(t);
  const { job, newVersion, changed } = await s.jobs.applyJob({ spec: jobSpec() });
  t.true(newVersion);
  t.true(changed);
  t.is(job?.version, 1n);
  t.is(job?.deployment?.status, DeploymentStatus.RUNNING);
  await eventually(async () => {
    const r = await replicas(s);
    if (r.length !== 3 || r.some((x) => x.state !== TaskState.RUNNING)) throw new Error("not yet");
  });
  const r = await replicas(s);
  const perWorker = new Map<string, number>();
  for (const x of r) perWorker.set(x.workerId, (perWorker.get(x.workerId) ?? 0) + 1);
  t.deepEqual([...perWorker.values()].sort(), [1, 2], "3 replicas on 2 workers: 2 + 1");
  for (const x of r) {
    t.is(x.spec?.labels["cube.job"], "web");
    t.is(x.spec?.labels["cube.job.version"], "1");
    t.is(x.spec?.name, "web");
  }
  // min_healthy_time runs on the fake clock.
  await settle();
  s.clock.advance(1000);
  const got = await eventually(async () => {
    const { job: j } = await s.jobs.getJob({ name: "web" });
    if (j?.status !== JobStatus.RUNNING) throw new Error(`status ${j?.status} ${j?.statusReason}`);
    return j;
  });
  t.is(got.deployment?.status, DeploymentStatus.SUCCESSFUL);
  t.is(got.stableVersion, 1n);
  t.like(got.counts, { desired: 3, running: 3, healthy: 3, pending: 0, failed: 0 });
  t.like(got.deployment, { desired: 3, placed: 3, healthy: 3 });
  // A scale afterwards changes the job's counts, not the figures of a deployment that ended.
  await s.jobs.scaleJob({ name: "web", count: 5 });
  const scaled = await eventually(async () => {
    const { job: j } = await s.jobs.getJob({ name: "web" });
    if (j?.counts?.running !== 5) throw new Error(`running ${j?.counts?.running}`);
    return j;
  });
  t.is(scaled.counts?.desired, 5);
  t.like(scaled.deployment, { status: DeploymentStatus.SUCCESSFUL, desired: 3, healthy: 3 });
});

test("applying the same spec again changes nothing and makes no new version", async (t) => {
  const s = await setup(t);
  await s.jobs.applyJob({ spec: jobSpec() });
  const again = await s.jobs.applyJob({ spec: jobSpec() });
  t.false(again.changed);
  t.false(again.newVersion);
  t.is(again.job?.version, 1n);
  const { versions } = await s.jobs.listJobVersions({ name: "web" });
  t.is(versions.length, 1);
  // Count and update change in place, without a version.
  const scaled = await s.jobs.applyJob({ spec: jobSpec({ count: 4 }) });
  t.true(scaled.changed);
  t.false(scaled.newVersion);
  t.is(scaled.job?.version, 1n);
  t.is((await s.jobs.listJobVersions({ name: "web" })).versions.length, 1);
});

test("bad input is INVALID_ARGUMENT or NOT_FOUND naming the field, and changes nothing", async (t) => {
  const s = await setup(t, 1);
  const cases: [JobInit, RegExp][] = [
    [jobSpec({ count: 10_001 }), /^spec\.count: at most 10000/],
    [jobSpec({ name: "no/slash" }), /^spec\.name: /],
    [jobSpec({ template: spec({ image: "" }) }), /^spec\.template\.image: required/],
    [
      jobSpec({ template: spec({ ports: [{ containerPort: 0 }] }) }),
      /^spec\.template\.ports\[0\]\.container_port/,
    ],
    [
      jobSpec({ constraints: [{ key: "zone", operator: "~", values: ["eu"] }] }),
      /^spec\.constraints\[0\]\.operator: unknown operator "~"/,
    ],
    [
      jobSpec({ constraints: [{ key: "zone", operator: "=", values: [] }] }),
      /^spec\.constraints\[0\]\.values/,
    ],
    [
      jobSpec({ template: spec({ labels: { "cube.job": "other" } }) }),
      /^spec\.template\.labels\["cube\.job"\]/,
    ],
    // A spec copied back from `cube job status -o json` holds the placeholder, not the secret.
    [
      jobSpec({ template: spec({ secretEnv: { DB_PASSWORD: "<redacted>" } }) }),
      /^spec\.template\.secret_env\["DB_PASSWORD"\]: "<redacted>" is what cube shows in place of a secret value/,
    ],
  ];
  for (const [bad, message] of cases) {
    const error = await t.throwsAsync(s.jobs.applyJob({ spec: bad }));
    t.is(ConnectError.from(error).code, Code.InvalidArgument);
    t.regex(ConnectError.from(error).rawMessage, message);
  }
  t.is((await s.jobs.listJobs({})).jobs.length, 0, "nothing half-applied");
  t.is((await s.h.tasks.listTasks({})).tasks.length, 0);
  await s.jobs.applyJob({ spec: jobSpec({ count: 1 }) });
  const revert = await t.throwsAsync(s.jobs.revertJob({ name: "web", version: 7n }));
  t.is(ConnectError.from(revert).code, Code.NotFound);
  t.regex(ConnectError.from(revert).rawMessage, /^version: job "web" has no version 7/);
  const scale = await t.throwsAsync(s.jobs.scaleJob({ name: "web", count: 20_000 }));
  t.regex(ConnectError.from(scale).rawMessage, /^count: at most 10000/);
  const missing = await t.throwsAsync(s.jobs.getJob({ name: "nope" }));
  t.is(ConnectError.from(missing).code, Code.NotFound);
  // A plain task may not pass for a replica.
  const plain = await t.throwsAsync(
    s.h.tasks.runTask({ spec: spec({ labels: { "cube.job": "web" } }) }),
  );
  t.regex(ConnectError.from(plain).rawMessage, /^spec\.labels\["cube\.job"\]/);
});

test("a failed replica is replaced; scale up and down, newest first; stop", async (t) => {
  const s = await setup(t);
  await s.jobs.applyJob({ spec: jobSpec() });
  await eventually(async () => {
    const n = (await replicas(s)).length;
    if (n !== 3) throw new Error(`${n}, not 3`);
  });
  await settle();
  const victim = (await replicas(s))[0] as Task;
  const w = s.workers.find((x) => x.id === victim.workerId) as FakeWorker;
  w.update(victim.id, victim.generation, TaskState.FAILED, { reason: "exit code 1", exitCode: 1 });
  await eventually(async () => {
    const r = await replicas(s);
    if (r.some((x) => x.id === victim.id) || r.length !== 3) throw new Error("not replaced yet");
  });
  const { job } = await s.jobs.getJob({ name: "web" });
  t.is(job?.counts?.failed, 1);

  await s.jobs.scaleJob({ name: "web", count: 5 });
  await eventually(async () => {
    const n = (await replicas(s)).length;
    if (n !== 5) throw new Error(`${n}, not 5`);
  });
  const before = await replicas(s);
  await s.jobs.scaleJob({ name: "web", count: 1 });
  const after = await replicas(s);
  t.is(after.length, 1);
  t.is(after[0]?.id, before[0]?.id, "the oldest replica is kept");
  await eventually(async () => {
    const { tasks } = await s.jobs.getJob({ name: "web" });
    if (tasks.length !== 1) throw new Error(`${tasks.length} tasks still tracked`);
  });

  const stopped = await s.jobs.stopJob({ name: "web" });
  t.is(stopped.job?.status, JobStatus.STOPPED);
  await eventually(async () => {
    const n = (await replicas(s)).length;
    if (n !== 0) throw new Error(`${n}, not 0`);
  });
  const scale = await t.throwsAsync(s.jobs.scaleJob({ name: "web", count: 2 }));
  t.is(ConnectError.from(scale).code, Code.FailedPrecondition);
  // Applying again starts it again (same version).
  const again = await s.jobs.applyJob({ spec: jobSpec() });
  t.true(again.changed);
  t.is(again.job?.version, 1n);
  await eventually(async () => {
    const n = (await replicas(s)).length;
    if (n !== 3) throw new Error(`${n}, not 3`);
  });
});

/** Advances the fake clock in steps until `check` passes (reconciles run between steps). */
async function until(s: Setup, check: () => Promise<boolean>, stepMs = 500, steps = 200) {
  for (let i = 0; i < steps; i++) {
    if (await check()) return;
    await settle(10);
    s.clock.advance(stepMs);
  }
  throw new Error("condition never held");
}

test("rolling update: max_parallel at a time, never fewer than count − max_parallel running, versions kept", async (t) => {
  const s = await setup(t);
  await s.jobs.applyJob({ spec: jobSpec() });
  await until(
    s,
    async () => (await s.jobs.getJob({ name: "web" })).job?.status === JobStatus.RUNNING,
  );
  const applied = await s.jobs.applyJob({ spec: jobSpec({ template: spec({ args: ["v2"] }) }) });
  t.true(applied.newVersion);
  t.is(applied.job?.version, 2n);
  let least = 3;
  await until(
    s,
    async () => {
      const r = await replicas(s);
      const running = r.filter((x) => x.state === TaskState.RUNNING).length;
      least = Math.min(least, running);
      const { job } = await s.jobs.getJob({ name: "web" });
      return job?.deployment?.status === DeploymentStatus.SUCCESSFUL;
    },
    250,
  );
  t.true(least >= 2, `running dropped to ${least}`);
  const r = await replicas(s);
  t.is(r.length, 3);
  t.true(r.every((x) => x.spec?.labels["cube.job.version"] === "2"));
  const { versions } = await s.jobs.listJobVersions({ name: "web" });
  t.deepEqual(
    versions.map((v) => [v.version, v.stable, v.deploymentStatus]),
    [
      [2n, true, DeploymentStatus.SUCCESSFUL],
      [1n, true, DeploymentStatus.SUCCESSFUL],
    ],
  );
  // Revert to 1 by hand.
  const reverted = await s.jobs.revertJob({ name: "web", version: 1n });
  t.is(reverted.job?.version, 1n);
  t.true(reverted.job?.deployment?.revert);
  await until(s, async () => {
    const rs = await replicas(s);
    return rs.length === 3 && rs.every((x) => x.spec?.labels["cube.job.version"] === "1");
  });
});

test("a revert to a version with older secret values warns on its deployment, naming the keys only", async (t) => {
  const s = await setup(t);
  const withSecret = (value: string, extra: Record<string, string> = {}) =>
    jobSpec({ template: spec({ secretEnv: { DB_PASSWORD: value, ...extra } }) });
  await s.jobs.applyJob({ spec: withSecret("first-secret") });
  const applied = await s.jobs.applyJob({
    spec: withSecret("rotated-secret", { API_KEY: "key-value" }),
  });
  t.deepEqual(applied.job?.deployment?.warnings, [], "a new version warns of nothing");
  const reverted = await s.jobs.revertJob({ name: "web", version: 1n });
  const expected = [
    "version 1 has other values than version 2 for secret_env DB_PASSWORD: the revert brings version 1's back (apply the job with the current values to keep them)",
    "version 1 has no secret_env API_KEY: its replicas run without it",
  ];
  t.deepEqual(reverted.job?.deployment?.warnings, expected);
  // Kept on the deployment: `cube job status` and the watch show it later too.
  const { job } = await s.jobs.getJob({ name: "web" });
  t.deepEqual(job?.deployment?.warnings, expected);
  const text = JSON.stringify(reverted, (_, v) => (typeof v === "bigint" ? String(v) : v));
  for (const secret of ["first-secret", "rotated-secret", "key-value"]) {
    t.false(text.includes(secret), `${secret} came back out`);
  }
  // A version 3 that differs from 1 but in its args: reverting to 1 warns of nothing.
  const v3 = await s.jobs.applyJob({
    spec: jobSpec({ template: spec({ args: ["v3"], secretEnv: { DB_PASSWORD: "first-secret" } }) }),
  });
  t.is(v3.job?.version, 3n);
  const same = await s.jobs.revertJob({ name: "web", version: 1n });
  t.is(same.job?.version, 1n);
  t.is(same.job?.deployment?.fromVersion, 3n);
  t.deepEqual(same.job?.deployment?.warnings, []);
});

test("a version whose replicas never get healthy fails; auto_revert goes back to the stable one", async (t) => {
  const s = await setup(t);
  const update = {
    maxParallel: 1,
    minHealthyTime: durationFromMs(1000),
    healthyDeadline: durationFromMs(5000),
    autoRevert: true,
  };
  const checked = (arg: string) =>
    spec({
      args: [arg],
      ports: [{ containerPort: 80 }],
      healthCheck: { path: "/health" },
      secretEnv: { TOKEN: `token-of-${arg}` },
    });
  await s.jobs.applyJob({ spec: jobSpec({ template: checked("v1"), update }) });
  // The fake workers report health: healthy for v1, unhealthy for v2.
  const report = async () => {
    for (const w of s.workers) {
      for (const a of w.assignments) {
        const task = a.task as Task;
        if (a.action !== AssignmentAction.RUN) continue;
        const version = task.spec?.labels["cube.job.version"];
        w.send({
          case: "health",
          value: {
            taskId: task.id,
            generation: task.generation,
            status: version === "1" ? HealthStatus.HEALTHY : HealthStatus.UNHEALTHY,
            message: version === "1" ? "HTTP 200" : "HTTP 500",
          },
        });
      }
    }
  };
  await until(s, async () => {
    await report();
    return (await s.jobs.getJob({ name: "web" })).job?.status === JobStatus.RUNNING;
  });
  await s.jobs.applyJob({ spec: jobSpec({ template: checked("v2"), update }) });
  await until(s, async () => {
    await report();
    const { job } = await s.jobs.getJob({ name: "web" });
    return (
      job?.version === 1n &&
      job.deployment?.revert === true &&
      job.deployment.status === DeploymentStatus.SUCCESSFUL &&
      job.status === JobStatus.RUNNING
    );
  });
  const r = await replicas(s);
  t.is(r.length, 3);
  t.true(r.every((x) => x.spec?.labels["cube.job.version"] === "1"));
  const { versions } = await s.jobs.listJobVersions({ name: "web" });
  const v2 = versions.find((v) => v.version === 2n);
  t.is(v2?.deploymentStatus, DeploymentStatus.FAILED);
  t.false(v2?.stable);
  t.regex(v2?.statusReason ?? "", /not healthy within 5s/);
  // The automatic revert brought v1's secret value back, and says so.
  const { job } = await s.jobs.getJob({ name: "web" });
  t.deepEqual(job?.deployment?.warnings, [
    "version 1 has other values than version 2 for secret_env TOKEN: the revert brings version 1's back (apply the job with the current values to keep them)",
  ]);
});

test("constraints: replicas only on matching workers, and the job says why the rest wait", async (t) => {
  const s = await setup(t, 2, [{ zone: "eu" }, { zone: "us" }]);
  await s.jobs.applyJob({
    spec: jobSpec({
      count: 2,
      constraints: [{ key: "zone", operator: "=", values: ["eu"] }],
      // Fixed host port: one replica per worker.
      template: spec({ ports: [{ containerPort: 80, hostPort: 8080 }] }),
    }),
  });
  const r = await eventually(async () => {
    const x = await replicas(s);
    if (x.length !== 2 || !x.some((y) => y.state === TaskState.RUNNING)) throw new Error("not yet");
    return x;
  });
  t.true(r.filter((x) => x.workerId !== "").every((x) => x.workerId === "w1"));
  const pending = r.find((x) => x.state === TaskState.PENDING);
  t.regex(
    pending?.reason ?? "",
    /0\/2 workers fit: 1 does not match zone = eu, 1 already holds host port 8080\/tcp/,
  );
  await settle();
  const { job } = await s.jobs.getJob({ name: "web" });
  t.is(job?.status, JobStatus.DEPLOYING);
  t.regex(job?.statusReason ?? "", /1 replica pending: 0\/2 workers fit/);
  t.is(job?.counts?.pending, 1);
});

test("the manager restarts mid-deployment and resumes: the update finishes, no duplicate", async (t) => {
  const s = await setup(t);
  await s.jobs.applyJob({ spec: jobSpec() });
  await until(
    s,
    async () => (await s.jobs.getJob({ name: "web" })).job?.status === JobStatus.RUNNING,
  );
  await s.jobs.applyJob({ spec: jobSpec({ template: spec({ args: ["v2"] }) }) });
  await until(s, async () =>
    (await replicas(s)).some(
      (x) => x.spec?.labels["cube.job.version"] === "2" && x.state === TaskState.RUNNING,
    ),
  );
  // A new control plane over the same store (as after kill -9), the workers reconnect.
  const h2 = await s.h.restart();
  const s2: Setup = { ...s, h: h2, jobs: createClient(JobService, h2.transport) };
  for (const w of s.workers) {
    w.disconnect();
    await w.connect(
      h2.transport,
      [...w.running].map(([taskId, generation]) => ({
        taskId,
        generation,
        state: TaskState.RUNNING,
        containerId: `c-${taskId}`,
      })),
    );
  }
  const { job } = await s2.jobs.getJob({ name: "web" });
  t.is(job?.version, 2n);
  t.is(job?.deployment?.status, DeploymentStatus.RUNNING);
  await until(
    s2,
    async () =>
      (await s2.jobs.getJob({ name: "web" })).job?.deployment?.status ===
      DeploymentStatus.SUCCESSFUL,
  );
  const r = await replicas(s2);
  t.is(r.length, 3);
  t.true(r.every((x) => x.spec?.labels["cube.job.version"] === "2"));
  const running = s.workers.reduce((n, w) => n + w.running.size, 0);
  t.is(running, 3, "exactly three containers run on the workers");
});

test("WatchJobs: the job as it is, then each change", async (t) => {
  const s = await setup(t, 1);
  await s.jobs.applyJob({ spec: jobSpec({ count: 1 }) });
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const seen: JobStatus[] = [];
  const watching = (async () => {
    try {
      for await (const { job } of s.jobs.watchJobs({ name: "web" }, { signal: abort.signal })) {
        if (job) seen.push(job.status);
        if (job?.status === JobStatus.RUNNING) return;
      }
    } catch {
      // aborted
    }
  })();
  await until(s, async () => seen.includes(JobStatus.RUNNING));
  await watching;
  t.true(seen.length >= 2);
  t.is(seen.at(-1), JobStatus.RUNNING);
});

test("job ids and specs: replicas share the version's spec object", async (t) => {
  const s = await setup(t, 1);
  await s.jobs.applyJob({ spec: jobSpec({ count: 3 }) });
  const entries = [...(s.h.cp.jobs.get("web")?.members.values() ?? [])];
  t.is(entries.length, 3);
  t.true(entries.every((e) => e.task.spec === entries[0]?.task.spec));
  t.true(entries.every((e) => /^web-[0-9a-f]{8}$/.test(e.task.id)));
});

test("a fixed host port is held per worker across plain tasks and jobs: the second waits, named, until the first stops", async (t) => {
  const s = await setup(t, 1);
  const ports = [{ containerPort: 80, hostPort: 8080 }];
  const { task: plain } = await s.h.tasks.runTask({ spec: spec({ ports }) });
  await eventually(async () => {
    const got = (await s.h.tasks.getTask({ id: plain?.id ?? "" })).task;
    if (got?.state !== TaskState.RUNNING) throw new Error(`plain task ${got?.state}`);
  });
  const reason = /^0\/1 workers fit: 1 already holds host port 8080\/tcp$/;
  // Another plain task on the same port waits…
  const { task: second } = await s.h.tasks.runTask({ spec: spec({ ports }) });
  t.is(second?.state, TaskState.PENDING);
  t.regex(second?.reason ?? "", reason);
  await s.h.tasks.stopTask({ id: second?.id ?? "" });
  // …and so does a job's replica, though the job has no peer there.
  await s.jobs.applyJob({ spec: jobSpec({ count: 1, template: spec({ ports }) }) });
  const waiting = await eventually(async () => {
    const [r] = await replicas(s);
    if (r?.state !== TaskState.PENDING || !r.reason) throw new Error(`replica ${r?.state}`);
    return r;
  });
  t.regex(waiting.reason, reason);
  // A task on another port, or on no fixed port, is not held back.
  const { task: other } = await s.h.tasks.runTask({
    spec: spec({ ports: [{ containerPort: 80, hostPort: 8081 }] }),
  });
  t.is(other?.state, TaskState.SCHEDULED);
  // The plain task stops: its port is free and the replica takes it.
  await s.h.tasks.stopTask({ id: plain?.id ?? "" });
  await eventually(async () => {
    const [r] = await replicas(s);
    if (r?.state !== TaskState.RUNNING || r.workerId !== "w1")
      throw new Error(`replica ${r?.state}`);
  });
});

test("min_healthy_time survives a manager restart: it counts from the replica's stored ready_at", async (t) => {
  const s = await setup(t, 1);
  const update = {
    maxParallel: 1,
    minHealthyTime: durationFromMs(10_000),
    healthyDeadline: durationFromMs(60_000),
  };
  await s.jobs.applyJob({ spec: jobSpec({ count: 1, update }) });
  const readyAt = s.clock.now();
  const [r] = await eventually(async () => {
    const x = await replicas(s);
    if (x[0]?.state !== TaskState.RUNNING) throw new Error(`replica ${x[0]?.state}`);
    return x;
  });
  t.is(r?.readyAt && timestampMs(r.readyAt), readyAt, "ready_at is when it became RUNNING");
  s.clock.advance(8000);
  await settle();
  const h2 = await s.h.restart();
  const s2: Setup = { ...s, h: h2, jobs: createClient(JobService, h2.transport) };
  const [w] = s.workers;
  w?.disconnect();
  await w?.connect(
    h2.transport,
    [...(w?.running ?? [])].map(([taskId, generation]) => ({
      taskId,
      generation,
      state: TaskState.RUNNING,
      containerId: `c-${taskId}`,
    })),
  );
  await settle();
  t.is((await s2.jobs.getJob({ name: "web" })).job?.status, JobStatus.DEPLOYING);
  // 10.5 s after it became ready, 2.5 s after the restart: healthy long enough.
  s2.clock.advance(2500);
  await eventually(async () => {
    const { job } = await s2.jobs.getJob({ name: "web" });
    if (job?.deployment?.status !== DeploymentStatus.SUCCESSFUL) {
      throw new Error(`deployment ${job?.deployment?.status}: ${job?.statusReason}`);
    }
  });
  // Not ready any more: ready_at is cleared.
  await s2.jobs.stopJob({ name: "web" });
  await eventually(async () => {
    const { task } = await s2.h.tasks.getTask({ id: r?.id ?? "" });
    if (task?.state !== TaskState.COMPLETED) throw new Error(`task ${task?.state}`);
    t.is(task.readyAt, undefined);
  });
});
