/**
 * Jobs end to end: a real manager and two real workers (processes), a real dockerd, the real
 * `cube` executable. Docker is polled for what runs, not the manager. A second tag of the
 * test image (cube/httpd:v2) is made here for updates.
 */
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { equals, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import { parseJobFile } from "../cli/parse-job-file.js";
import { DeploymentStatus, JobSpecSchema, JobStatus } from "../gen/cube/v1/job_pb.js";
import { JobService } from "../gen/cube/v1/job_service_pb.js";
import { WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { WorkerService } from "../gen/cube/v1/worker_service_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { cube, cubeEnv } from "./cli-harness.js";
import { docker, HTTP_IMAGE, requireDocker, tempDir } from "./fixtures.js";
import { eventually } from "./manager-harness.js";
import { Cluster, type Spawned } from "./manager-process.js";

const run = promisify(execFile);
const V2_IMAGE = "cube/httpd:v2";

/** A job file: `count` replicas of `image`, health-checked, rolled one at a time. */
function jobYaml(name: string, image: string, count: number, extra = ""): string {
  return `name: ${name}
count: ${count}
template:
  image: ${image}
  ports: [{ containerPort: 80 }]
  healthCheck: { path: /cgi-bin/health, interval: 250ms, failureThreshold: 2 }
  resources: { memoryBytes: 32Mi }${extra}
update: { maxParallel: 1, minHealthyTime: 1s, healthyDeadline: 60s, autoRevert: true }
`;
}

interface Bed {
  cluster: Cluster;
  manager: Spawned;
  dir: string;
  jobs: ReturnType<typeof createClient<typeof JobService>>;
  env: NodeJS.ProcessEnv;
  workerIds: string[];
}

async function bed(t: ExecutionContext, workers = 2, managerEnv: Record<string, string> = {}) {
  await requireDocker();
  await run("docker", ["tag", HTTP_IMAGE, V2_IMAGE]);
  const dir = await tempDir(t);
  const cluster = new Cluster(t, dir, { CUBE_DOWN_GRACE: "1000", ...managerEnv });
  const manager = await cluster.startManager();
  const workerIds: string[] = [];
  for (let i = 0; i < workers; i++) workerIds.push((await cluster.startWorker(`w${i + 1}`)).id);
  const transport = grpcTransport(manager.address, { token: manager.token });
  const list = createClient(WorkerService, transport);
  await eventually(async () => {
    const { workers: ws } = await list.listWorkers({});
    if (ws.filter((w) => w.status === WorkerStatus.READY).length !== workers) {
      throw new Error("workers not ready");
    }
  }, 30_000);
  const env = cubeEnv({ CUBE_MANAGER: manager.address, CUBE_TOKEN: manager.token ?? "" });
  const b: Bed = {
    cluster,
    manager,
    dir,
    jobs: createClient(JobService, transport),
    env,
    workerIds,
  };
  return b;
}

/** Running containers of job `name`, from Docker: worker, image and task of each. */
async function containers(name: string) {
  const list = await docker.listContainers({
    filters: { label: [`cube.job=${name}`], status: ["running"] },
  });
  return list.map((c) => ({
    worker: c.Labels["cube.worker"] ?? "",
    task: c.Labels["cube.task"] ?? "",
    image: c.Image,
  }));
}

async function file(b: Bed, fileName: string, text: string): Promise<string> {
  const path = join(b.dir, fileName);
  await writeFile(path, text);
  return path;
}

async function jobCli(b: Bed, args: string[], timeoutMs = 180_000) {
  const r = await cube(["job", ...args], { env: b.env, timeoutMs });
  return r;
}

test.serial(
  "3 replicas spread on 2 workers; v1 → v2 rolls with never fewer than 2 running; a failing v3 is reverted to v2, warning of its older secret; revert to v1; scale 3 → 5 → 1; the file round-trips",
  async (t) => {
    const b = await bed(t);
    const v1 = await file(b, "web.yaml", jobYaml("web", HTTP_IMAGE, 3));
    const first = await jobCli(b, ["run", "-f", v1, "--wait"]);
    t.is(first.code, 0, first.stderr);
    t.is(first.stdout.trim(), "1");
    t.regex(first.stderr, /version 1 deployed, 3 replicas healthy/);

    const placed = await containers("web");
    t.is(placed.length, 3);
    const perWorker = new Map<string, number>();
    for (const c of placed) perWorker.set(c.worker, (perWorker.get(c.worker) ?? 0) + 1);
    t.deepEqual([...perWorker.values()].sort(), [1, 2], "spread: 2 + 1");

    // The job file round-trips through `cube job status -o json`.
    const status = await jobCli(b, ["status", "web", "-o", "json"]);
    t.is(status.code, 0, status.stderr);
    const shown = JSON.parse(status.stdout) as { job: { spec: JsonValue }; tasks: unknown[] };
    const { readFile } = await import("node:fs/promises");
    const asFiled = parseJobFile(await readFile(v1, "utf8"), v1);
    t.true(equals(JobSpecSchema, fromJson(JobSpecSchema, shown.job.spec), asFiled));
    t.is(shown.tasks.length, 3);

    // v1 → v2, Docker polled all along.
    let least = Number.POSITIVE_INFINITY;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        least = Math.min(least, (await containers("web")).length);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const v2 = await file(
      b,
      "web-v2.yaml",
      jobYaml("web", V2_IMAGE, 3, '\n  secretEnv: { DB_PASSWORD: "v2-secret" }'),
    );
    const second = await jobCli(b, ["run", "-f", v2, "--wait"]);
    polling = false;
    await poller;
    t.is(second.code, 0, second.stderr);
    t.is(second.stdout.trim(), "2");
    t.true(least >= 2, `running replicas dropped to ${least}`);
    t.log(`fewest running during v1 → v2: ${least}`);
    const afterV2 = await containers("web");
    t.is(afterV2.length, 3);
    t.true(afterV2.every((c) => c.image === V2_IMAGE));

    // v3 fails its health check (HEALTH_FAIL=1): the deployment fails, auto_revert goes to v2,
    // and with it v2's secret value, though v3 rotated it.
    const v3 = await file(
      b,
      "web-v3.yaml",
      jobYaml(
        "web",
        V2_IMAGE,
        3,
        '\n  env: { HEALTH_FAIL: "1" }\n  secretEnv: { DB_PASSWORD: "v3-rotated" }',
      ),
    );
    const third = await jobCli(b, ["run", "-f", v3, "--wait"]);
    t.is(third.code, 3, third.stderr);
    t.regex(third.stderr, /deployment of version 3 failed; reverting to version 2/);
    const reverted = await eventually(async () => {
      const { job } = await b.jobs.getJob({ name: "web" });
      if (
        job?.version !== 2n ||
        job.deployment?.status !== DeploymentStatus.SUCCESSFUL ||
        job.status !== JobStatus.RUNNING ||
        job.counts?.healthy !== 3
      ) {
        throw new Error(`not back on v2 yet: ${job?.status} ${job?.statusReason}`);
      }
      return job;
    }, 120_000);
    t.true(reverted.deployment?.revert);
    const onV2 = await eventually(async () => {
      const list = await containers("web");
      if (list.length !== 3) throw new Error(`${list.length} containers`);
      return list;
    }, 30_000);
    t.true(onV2.every((c) => c.image === V2_IMAGE));
    const history = await jobCli(b, ["history", "web", "-o", "json"]);
    const versions = (
      JSON.parse(history.stdout) as { versions: { version: string; deploymentStatus: string }[] }
    ).versions;
    t.deepEqual(
      versions.map((v) => [v.version, v.deploymentStatus]),
      [
        ["3", "DEPLOYMENT_STATUS_FAILED"],
        ["2", "DEPLOYMENT_STATUS_SUCCESSFUL"],
        ["1", "DEPLOYMENT_STATUS_SUCCESSFUL"],
      ],
    );

    // The revert's warning names the secret, not its values.
    const described = await jobCli(b, ["status", "web"]);
    t.is(described.code, 0, described.stderr);
    t.regex(
      described.stdout,
      /^Warning: {4}version 2 has other values than version 3 for secret_env DB_PASSWORD: the revert brings version 2's back/m,
    );
    t.false(/v2-secret|v3-rotated/.test(described.stdout), described.stdout);

    // Back to v1 by hand: it has no DB_PASSWORD, and `cube job revert` says so on stderr.
    const back = await jobCli(b, ["revert", "web", "1", "--wait"]);
    t.is(back.code, 0, back.stderr);
    t.regex(
      back.stderr,
      /^cube: warning: version 1 has no secret_env DB_PASSWORD: its replicas run without it$/m,
    );
    t.regex(back.stderr, /version 1 deployed, 3 replicas healthy/);
    const onV1 = await containers("web");
    t.is(onV1.length, 3);
    t.true(onV1.every((c) => c.image === HTTP_IMAGE));

    // Scale 3 → 5 → 1.
    t.is((await jobCli(b, ["scale", "web", "5"])).code, 0);
    await eventually(async () => {
      const n = (await containers("web")).length;
      if (n !== 5) throw new Error(`${n}, not 5`);
    }, 60_000);
    const five = await containers("web");
    t.is(new Set(five.map((c) => c.worker)).size, 2);
    t.is((await jobCli(b, ["scale", "web", "1"])).code, 0);
    await eventually(async () => {
      const n = (await containers("web")).length;
      if (n !== 1) throw new Error(`${n}, not 1`);
    }, 60_000);

    const ls = await jobCli(b, ["ls"]);
    t.regex(ls.stdout, /^web\s+1\s+RUNNING\s+1\/1/m);
    t.is((await jobCli(b, ["stop", "web"])).code, 0);
    await eventually(async () => {
      const n = (await containers("web")).length;
      if (n !== 0) throw new Error(`${n}, not 0`);
    }, 60_000);
  },
);

test.serial("kill -9 of a worker: its replicas are replaced on the other", async (t) => {
  const b = await bed(t);
  const spec = await file(b, "api.yaml", jobYaml("api", HTTP_IMAGE, 3));
  t.is((await jobCli(b, ["run", "-f", spec, "--wait"])).code, 0);
  const before = await containers("api");
  const victim = b.cluster.workers.get("w1") as Spawned;
  const lost = before.filter((c) => c.worker === victim.id).length;
  t.true(lost >= 1);
  await victim.kill9();
  const after = await eventually(async () => {
    const { job } = await b.jobs.getJob({ name: "api" });
    const list = (await containers("api")).filter((c) => c.worker !== victim.id);
    if (list.length !== 3 || job?.counts?.healthy !== 3) {
      throw new Error(`${list.length} running elsewhere, job ${job?.statusReason}`);
    }
    return list;
  }, 90_000);
  t.true(after.every((c) => c.worker === b.workerIds[1]));
});

test.serial(
  "kill -9 of the manager mid-update: the update finishes after the restart, no duplicate replica",
  async (t) => {
    const b = await bed(t);
    const slow = (image: string) =>
      jobYaml("svc", image, 3).replace("minHealthyTime: 1s", "minHealthyTime: 3s");
    t.is(
      (await jobCli(b, ["run", "-f", await file(b, "svc.yaml", slow(HTTP_IMAGE)), "--wait"])).code,
      0,
    );
    const applied = await jobCli(b, ["run", "-f", await file(b, "svc-v2.yaml", slow(V2_IMAGE))]);
    t.is(applied.code, 0, applied.stderr);
    // Mid-update: one replica of v2 runs, the others are still v1.
    await eventually(async () => {
      const list = await containers("svc");
      if (!list.some((c) => c.image === V2_IMAGE)) throw new Error("no v2 yet");
    }, 60_000);
    await b.manager.kill9();
    const manager = await b.cluster.startManager();
    const jobs = createClient(JobService, grpcTransport(manager.address, { token: manager.token }));
    const done = await eventually(async () => {
      const { job } = await jobs.getJob({ name: "svc" });
      if (job?.deployment?.status !== DeploymentStatus.SUCCESSFUL || job.counts?.healthy !== 3) {
        throw new Error(`not done: ${job?.statusReason}`);
      }
      return job;
    }, 120_000);
    t.is(done.version, 2n);
    const list = await eventually(async () => {
      const l = await containers("svc");
      if (l.length !== 3) throw new Error(`${l.length} containers`);
      return l;
    }, 30_000);
    t.true(list.every((c) => c.image === V2_IMAGE));
    t.is(new Set(list.map((c) => c.task)).size, 3, "no duplicate replica");
  },
);

test.serial(
  "drain of a worker: all its replicas healthy elsewhere, none left on it; uncordon",
  async (t) => {
    const b = await bed(t);
    const spec = await file(b, "db.yaml", jobYaml("db", HTTP_IMAGE, 3));
    t.is((await jobCli(b, ["run", "-f", spec, "--wait"])).code, 0);
    const target = b.workerIds[0] as string;
    const before = (await containers("db")).filter((c) => c.worker === target).length;
    t.true(before >= 1);
    const drained = await cube(["node", "drain", "w1", "--deadline", "2m", "--wait"], {
      env: b.env,
      timeoutMs: 180_000,
    });
    t.is(drained.code, 0, drained.stderr);
    t.regex(drained.stderr, /draining/);
    const after = await containers("db");
    t.is(after.filter((c) => c.worker === target).length, 0, "none left on the drained worker");
    const { job } = await b.jobs.getJob({ name: "db" });
    t.is(job?.counts?.healthy, 3);
    t.is(after.length, 3);
    const ls = await cube(["node", "ls"], { env: b.env });
    t.regex(ls.stdout, /^w1 .*drained$/m);
    t.is((await cube(["node", "uncordon", "w1"], { env: b.env })).code, 0);
    const again = await cube(["node", "ls", "-o", "json"], { env: b.env });
    const nodes = (
      JSON.parse(again.stdout) as { nodes: { worker: { name: string }; cordoned?: boolean }[] }
    ).nodes;
    t.false(nodes.find((n) => n.worker.name === "w1")?.cordoned ?? false);
  },
);
