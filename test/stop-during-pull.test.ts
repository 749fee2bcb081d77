/**
 * `cube stop` while the task's image is pulling: the pull is cancelled, no container is ever
 * created, and the task ends COMPLETED "stopped" at once — as Kubernetes deletes a pod whose
 * image is still pulling. A real manager and a real worker on the shared Docker engine, over
 * real sockets; the image comes from a registry on loopback that hangs in its layer, so the
 * pull would otherwise last until the worker's stall timeout (60 s).
 */
import { randomUUID } from "node:crypto";
import test from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { dockerWorker } from "./docker-worker.js";
import { docker, requireDocker, startTestManager } from "./fixtures.js";
import { eventually } from "./manager-harness.js";
import { stallingRegistry } from "./stalling-registry.js";

test("a task stopped while its image pulls: the pull is cancelled, no container is created, the stop takes effect at once", async (t) => {
  await requireDocker();
  const registry = await stallingRegistry(`t${randomUUID().slice(0, 8)}`);
  t.teardown(() => registry.close());
  const m = await startTestManager(t, { auth: false });
  const { tasks } = await dockerWorker(t, m.address);
  t.teardown(() =>
    docker
      .getImage(registry.image)
      .remove({ force: true })
      .catch(() => undefined),
  );
  const began = Math.floor(Date.now() / 1000);
  const { task } = await tasks.runTask({ spec: { name: "pulling", image: registry.image } });
  const id = task?.id ?? "";
  await registry.layerStarted;
  const asked = Date.now();
  await tasks.stopTask({ id });
  const stopped = await eventually(async () => {
    const { task } = await tasks.getTask({ id });
    if (task?.state !== TaskState.COMPLETED) throw new Error(`${TaskState[task?.state ?? 0]}`);
    return task;
  }, 20_000);
  const ms = Date.now() - asked;
  t.log(`stop took effect ${ms} ms after it was asked`);
  t.is(stopped.reason, "stopped");
  t.true(ms < 3000, `the stop waited ${ms} ms (for the pull?)`);
  const { events } = await tasks.listTaskEvents({ taskId: id, pageSize: 1000 });
  t.false(
    events.some((e) => e.task?.state === TaskState.RUNNING),
    "the task never ran",
  );
  // Not made and removed either: the engine's own record of container events says so.
  const created = await containerEvents(id, began);
  t.deepEqual(created, [], "no container was created");
  await t.throwsAsync(docker.getImage(registry.image).inspect(), undefined, "no image pulled");
});

/** The engine's container events (create, start, …) for task `id` since `since` (s) until now. */
async function containerEvents(id: string, since: number): Promise<string[]> {
  const stream = await docker.getEvents({
    since,
    until: Math.ceil(Date.now() / 1000) + 1,
    filters: { type: ["container"], label: [`cube.task=${id}`] },
  });
  let text = "";
  for await (const chunk of stream) text += String(chunk);
  return text
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => (JSON.parse(line) as { Action: string }).Action);
}
