/**
 * kill -9 of the manager in the middle of 200 submissions, with real workers on a real
 * dockerd. Capacity is kept small on purpose (each task asks 0.2 cpu; two workers of 2
 * cores take 20) so the test starts 20 real containers, not 200, while 180 tasks wait
 * PENDING — which exercises the pending queue across the crash too.
 */
import { createClient } from "@connectrpc/connect";
import test from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { allTasks, docker, requireDocker, tempDir } from "./fixtures.js";
import { eventually } from "./manager-harness.js";
import { Cluster } from "./manager-process.js";

const TOTAL = 200;

test("kill -9 of the manager while 200 tasks are submitted: every acknowledged task survives, one container per running task", async (t) => {
  await requireDocker();
  const cluster = new Cluster(t, await tempDir(t));
  const manager = await cluster.startManager();
  const a = await cluster.startWorker("wa");
  const b = await cluster.startWorker("wb");
  const client = createClient(
    TaskService,
    grpcTransport(manager.address, { token: manager.token }),
  );
  const spec = (i: number) => ({
    name: `sleeper-${i}`,
    image: "cube/httpd:local",
    command: ["sh", "-c", "sleep 3600"],
    resources: { cpu: 0.2 },
    labels: { test: "crash" },
  });
  const acknowledged = new Set<string>();
  const unanswered: number[] = [];
  let next = 0;
  const lanes = Array.from({ length: 8 }, async () => {
    while (next < TOTAL) {
      const i = next++;
      try {
        await client.runTask({ id: `task-${i}`, spec: spec(i) });
        acknowledged.add(`task-${i}`);
      } catch {
        unanswered.push(i);
      }
      if (acknowledged.size >= 80 && manager.child.exitCode === null) await manager.kill9();
    }
  });
  await Promise.all(lanes);
  t.log(`${acknowledged.size} acknowledged before the kill, ${unanswered.length} unanswered`);
  t.true(unanswered.length > 0);

  const restarted = await cluster.startManager();
  const again = createClient(
    TaskService,
    grpcTransport(restarted.address, { token: restarted.token }),
  );
  const before = await allTasks(again);
  const ids = new Set(before.map((x) => x.id));
  for (const id of acknowledged) t.true(ids.has(id), `acknowledged ${id} survived`);
  // The client retries what got no answer, with the same ids: idempotent.
  for (const i of unanswered) await again.runTask({ id: `task-${i}`, spec: spec(i) });
  const workerIds = [a.id, b.id];
  const settled = await eventually(async () => {
    const all = await allTasks(again);
    if (all.length !== TOTAL) throw new Error(`${all.length} tasks`);
    const running = all.filter((x) => x.state === TaskState.RUNNING);
    if (running.length !== 20) throw new Error(`${running.length} RUNNING`);
    const containers = new Map<string, { gen: string; n: number }>();
    for (const w of workerIds) {
      for (const c of await docker.listContainers({ filters: { label: [`cube.worker=${w}`] } })) {
        const task = c.Labels["cube.task"] ?? "";
        const seen = containers.get(task);
        containers.set(task, { gen: c.Labels["cube.generation"] ?? "", n: (seen?.n ?? 0) + 1 });
      }
    }
    for (const x of running) {
      const c = containers.get(x.id);
      if (c?.n !== 1) throw new Error(`${x.id}: ${c?.n ?? 0} running containers`);
      if (c.gen !== String(x.generation))
        throw new Error(`${x.id}: container of generation ${c.gen}`);
    }
    const runningIds = new Set(running.map((x) => x.id));
    const strays = [...containers.keys()].filter((id) => !runningIds.has(id));
    if (strays.length > 0) throw new Error(`containers of tasks not RUNNING: ${strays}`);
    return all;
  }, 50_000);
  const pending = settled.filter((x) => x.state === TaskState.PENDING);
  t.is(pending.length, TOTAL - 20);
  t.regex(pending[0]?.reason ?? "", /^0\/2 workers fit: 2 lack 0.2 cpu cores/);
});
