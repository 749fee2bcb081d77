/**
 * The restart policy with real processes and a real dockerd: a task whose health check
 * fails is restarted up to its limit, then FAILED, and its container stopped.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import test from "ava";
import { RestartMode, TaskEventType, TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { docker, HTTP_IMAGE, requireDocker, tempDir } from "./fixtures.js";
import { eventually } from "./manager-harness.js";
import { Cluster } from "./manager-process.js";

test("a task failing its health check is restarted up to its limit, then FAILED and stopped", async (t) => {
  await requireDocker();
  const cluster = new Cluster(t, await tempDir(t));
  const manager = await cluster.startManager();
  const worker = await cluster.startWorker("w");
  const tasks = createClient(TaskService, grpcTransport(manager.address, { token: manager.token }));
  const { task } = await tasks.runTask({
    spec: {
      name: "sick",
      image: HTTP_IMAGE,
      env: { HEALTH_FAIL: "1" },
      ports: [{ containerPort: 80 }],
      healthCheck: {
        path: "/cgi-bin/health",
        interval: durationFromMs(300),
        timeout: durationFromMs(1000),
        failureThreshold: 2,
      },
      restartPolicy: { mode: RestartMode.ON_FAILURE, maxRestarts: 2, backoff: durationFromMs(100) },
    },
  });
  const id = task?.id ?? "";
  const failed = await eventually(async () => {
    const { task } = await tasks.getTask({ id });
    if (task?.state !== TaskState.FAILED) {
      throw new Error(`${TaskState[task?.state ?? 0]} gen ${task?.generation} (${task?.reason})`);
    }
    return task;
  }, 45_000);
  t.is(failed.reason, "health check failed: HTTP 500 (gave up after 2 restarts)");
  t.is(failed.restartCount, 2);
  t.is(failed.generation, 3n);
  const { events } = await tasks.listTaskEvents({ taskId: id, pageSize: 1000 });
  const progress = events.filter((e) => e.type === TaskEventType.PROGRESS).map((e) => e.message);
  t.true(progress.includes("restarting in 100ms (1/2)"), JSON.stringify(progress));
  t.true(progress.includes("restarting in 200ms (2/2)"), JSON.stringify(progress));
  const unhealthy = events.filter((e) => e.type === TaskEventType.HEALTH_CHANGED);
  t.is(unhealthy.length, 3, "one UNHEALTHY report per generation");
  // Given up: the container is stopped and removed.
  await eventually(async () => {
    const live = await docker.listContainers({ filters: { label: [`cube.task=${id}`] } });
    if (live.length > 0) throw new Error(`${live.length} containers still running`);
  }, 20_000);
  t.pass(`worker ${worker.id}`);
});
