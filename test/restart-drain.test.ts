/**
 * Restarts respect cordon and drain: a task waiting out its restart back-off on a worker that
 * is then drained (or cordoned) restarts elsewhere, like a new placement, so a drain reported
 * COMPLETE stays complete; and a drain that moves a task cancels the restart it was waiting
 * for, so the moved task is not restarted again once the back-off runs out.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import { DrainStatus, NodeService } from "../gen/cube/v1/node_service_pb.js";
import { HealthStatus, RestartMode, TaskState } from "../gen/cube/v1/task_pb.js";
import { AssignmentAction } from "../gen/cube/v1/worker_service_pb.js";
import { FakeClock } from "./fake-clock.js";
import {
  eventually,
  type FakeWorker,
  type Harness,
  harness,
  reach,
  runningOnW1WithSpare,
  spec,
} from "./manager-harness.js";

const BACKOFF_MS = 10_000;

/**
 * Two workers and a task "t" with a restart policy, RUNNING on w1 at generation 1 (w2 joins
 * after it was placed). The scripted workers send no heartbeats: the timeout is out of reach.
 */
async function setup(t: ExecutionContext, healthCheck = false) {
  const clock = new FakeClock();
  const h = await harness(t, { clock, heartbeatTimeoutMs: 3_600_000 });
  const { w1, w2 } = await runningOnW1WithSpare(
    h,
    spec({
      restartPolicy: {
        mode: RestartMode.ON_FAILURE,
        maxRestarts: 3,
        backoff: durationFromMs(BACKOFF_MS),
      },
      ...(healthCheck ? { ports: [{ containerPort: 80 }], healthCheck: { path: "/health" } } : {}),
    }),
  );
  const nodes = createClient(NodeService, h.transport);
  return { clock, h, w1, w2, nodes };
}

/** w1's container of "t" exits 1: FAILED, a restart in BACKOFF_MS. */
async function failOnW1(h: Harness, w1: FakeWorker) {
  w1.running.delete("t");
  w1.update("t", 1n, TaskState.FAILED, { exitCode: 1, reason: "exited 1" });
  await reach(h, "t", TaskState.FAILED, 1n);
  await eventually(() => {
    if (!h.cp.tasks.get("t")?.restartTimer) throw new Error("no restart waiting");
  });
}

test("a task in restart back-off on a worker that is then drained restarts elsewhere; the drain stays COMPLETE", async (t) => {
  const { clock, h, w1, w2, nodes } = await setup(t);
  await failOnW1(h, w1);
  // Nothing holds resources on w1 any more: the drain completes at once.
  await nodes.drainNode({ name: "w1" });
  await eventually(async () => {
    const { nodes: list } = await nodes.listNodes({});
    const drain = list.find((n) => n.worker?.id === "w1")?.drain;
    if (drain?.status !== DrainStatus.COMPLETE) throw new Error(`${drain?.status}`);
  });
  clock.advance(BACKOFF_MS);
  const restarted = await reach(h, "t", TaskState.RUNNING, 2n);
  t.is(restarted.workerId, "w2", "restarted on a worker that takes tasks");
  t.is(restarted.restartCount, 1);
  t.false(
    w1.assignments.some((a) => a.action === AssignmentAction.RUN && a.task?.generation === 2n),
    "the drained worker got no RUN",
  );
  t.truthy(w2.assignments.find((a) => a.action === AssignmentAction.RUN));
  t.is(h.cp.workers.get("w1")?.tasks.size, 0, "the drained worker holds nothing");
  const { nodes: after } = await nodes.listNodes({});
  t.is(after.find((n) => n.worker?.id === "w1")?.drain?.status, DrainStatus.COMPLETE);
});

test("a task in restart back-off on a cordoned worker restarts elsewhere", async (t) => {
  const { clock, h, w1, nodes } = await setup(t);
  await failOnW1(h, w1);
  await nodes.cordonNode({ name: "w1" });
  clock.advance(BACKOFF_MS);
  const restarted = await reach(h, "t", TaskState.RUNNING, 2n);
  t.is(restarted.workerId, "w2");
  t.false(
    w1.assignments.some((a) => a.action === AssignmentAction.RUN && a.task?.generation === 2n),
    "the cordoned worker got no RUN",
  );
});

/** Task "t" on `w1` reported unhealthy: its restart waits out the back-off. */
async function unhealthyWaitingRestart(h: Harness, w1: FakeWorker): Promise<void> {
  w1.send({
    case: "health",
    value: { taskId: "t", generation: 1n, status: HealthStatus.UNHEALTHY, message: "HTTP 500" },
  });
  await eventually(() => {
    if (!h.cp.tasks.get("t")?.restartTimer) throw new Error("no restart waiting");
  });
}

test("an unhealthy task waiting for its restart on a cordoned worker is moved: its copy there is stopped", async (t) => {
  const { clock, h, w1, w2, nodes } = await setup(t, true);
  await unhealthyWaitingRestart(h, w1);
  await nodes.cordonNode({ name: "w1" });
  clock.advance(BACKOFF_MS);
  const moved = await reach(h, "t", TaskState.RUNNING, 2n);
  t.is(moved.workerId, "w2");
  const stop = await w1.waitFor((a) => a.action === AssignmentAction.STOP);
  t.is(stop.task?.generation, 1n, "the unhealthy copy on the cordoned worker is stopped");
  t.truthy(w2.assignments.find((a) => a.action === AssignmentAction.RUN));
});

test("a drain moving a task that waits for a restart cancels that restart", async (t) => {
  const { clock, h, w1, w2, nodes } = await setup(t, true);
  await unhealthyWaitingRestart(h, w1);
  await nodes.drainNode({ name: "w1" });
  const moved = await reach(h, "t", TaskState.RUNNING, 2n);
  t.is(moved.workerId, "w2");
  const entry = h.cp.tasks.get("t");
  t.is(entry?.restartTimer, undefined, "the drain cancelled the restart");
  t.is(h.cp.restarting.size, 0);
  // The back-off runs out: nothing happens to the moved task.
  clock.advance(BACKOFF_MS);
  await new Promise((r) => setTimeout(r, 50));
  await h.cp.committed();
  const after = h.cp.tasks.get("t")?.task;
  t.is(after?.generation, 2n, "not restarted again");
  t.is(after?.workerId, "w2");
  t.is(after?.restartCount, 0);
  t.is(w2.assignments.filter((a) => a.action === AssignmentAction.RUN).length, 1);
});

test("an unhealthy task on a cordoned worker that nothing else can take restarts in place; its copy is not stopped", async (t) => {
  const { clock, h, w1, w2, nodes } = await setup(t, true);
  // w2 cordoned too: no other worker takes the task.
  await nodes.cordonNode({ name: "w2" });
  await unhealthyWaitingRestart(h, w1);
  await nodes.cordonNode({ name: "w1" });
  clock.advance(BACKOFF_MS);
  const restarted = await reach(h, "t", TaskState.RUNNING, 2n);
  t.is(restarted.workerId, "w1");
  t.false(
    w1.assignments.some((a) => a.action === AssignmentAction.STOP),
    "the running copy was stopped with nowhere else to go",
  );
  t.false(w2.assignments.some((a) => a.action === AssignmentAction.RUN));
});
