/**
 * Hardened containers by default (issue 15, point 6), checked on real containers with
 * `docker inspect`, and what a worker's operator can relax: never a client.
 */
import { createClient } from "@connectrpc/connect";
import test from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { registryOf } from "../worker/docker/container-spec.js";
import { docker, HTTP_IMAGE, requireDocker, tempDir } from "./fixtures.js";
import { eventually } from "./manager-harness.js";
import { Cluster } from "./manager-process.js";

async function runOn(cluster: Cluster, workerEnv: Record<string, string>, image = HTTP_IMAGE) {
  const manager = cluster.manager ?? (await cluster.startManager());
  await cluster.startWorker("w", workerEnv);
  const tasks = createClient(TaskService, grpcTransport(manager.address, { token: manager.token }));
  const { task } = await tasks.runTask({
    spec: { image, ports: [{ containerPort: 80 }] },
  });
  return eventually(async () => {
    const { task: now } = await tasks.getTask({ id: task?.id ?? "" });
    if (now?.state !== TaskState.RUNNING && now?.state !== TaskState.FAILED) {
      throw new Error(`still ${now?.state}: ${now?.reason}`);
    }
    return now;
  }, 30_000);
}

test("by default: no-new-privileges, a pids limit, NET_RAW dropped, ports on 127.0.0.1", async (t) => {
  await requireDocker();
  const task = await runOn(new Cluster(t, await tempDir(t)), {});
  t.is(task.state, TaskState.RUNNING, task.reason);
  const info = await docker.getContainer(task.containerId).inspect();
  t.deepEqual(info.HostConfig.SecurityOpt, ["no-new-privileges"]);
  t.is(info.HostConfig.PidsLimit, 1024);
  t.deepEqual(info.HostConfig.CapDrop, ["NET_RAW"]);
  const bindings = Object.values(info.HostConfig.PortBindings ?? {}).flat() as { HostIp: string }[];
  t.true(bindings.length > 0 && bindings.every((b) => b.HostIp === "127.0.0.1"));
});

test("a worker's operator relaxes the policy for that worker (CUBE_PIDS_LIMIT=0, CUBE_CAP_DROP=, CUBE_ALLOW_NEW_PRIVILEGES=1)", async (t) => {
  await requireDocker();
  const task = await runOn(new Cluster(t, await tempDir(t)), {
    CUBE_PIDS_LIMIT: "0",
    CUBE_CAP_DROP: "",
    CUBE_ALLOW_NEW_PRIVILEGES: "1",
  });
  t.is(task.state, TaskState.RUNNING, task.reason);
  const info = await docker.getContainer(task.containerId).inspect();
  t.falsy(info.HostConfig.SecurityOpt?.length);
  t.falsy(info.HostConfig.PidsLimit);
  t.falsy(info.HostConfig.CapDrop?.length);
});

test("an image from a registry the worker does not allow fails before any pull, saying why", async (t) => {
  await requireDocker();
  const task = await runOn(new Cluster(t, await tempDir(t)), {
    CUBE_ALLOW_REGISTRIES: "127.0.0.1:5000",
  });
  t.is(task.state, TaskState.FAILED);
  t.regex(
    task.reason,
    /registry docker\.io is not allowed on this worker \(allowed: 127\.0\.0\.1:5000\)/,
  );
  t.is(task.containerId, "");
});

test("registryOf resolves image references as Docker does", (t) => {
  const cases: [string, string][] = [
    ["busybox", "docker.io"],
    ["cube/httpd:local", "docker.io"],
    ["library/nginx@sha256:abc", "docker.io"],
    ["127.0.0.1:5000/app:1", "127.0.0.1:5000"],
    ["localhost/app", "localhost"],
    ["ghcr.io/org/app:v2", "ghcr.io"],
    ["registry.internal:443/team/app", "registry.internal:443"],
  ];
  for (const [image, registry] of cases) t.is(registryOf(image), registry, image);
});
