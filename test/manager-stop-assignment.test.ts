/**
 * A STOP assignment carries the task's id and the generation to stop, never its spec: the
 * secret_env values go to a worker in a RUN only. Checked for each kind of STOP the manager
 * sends: a stop on request, a drain's move, and the inventory reconcile of a copy that came
 * back.
 */
import { toJsonString } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import { NodeService } from "../gen/cube/v1/node_service_pb.js";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import {
  type Assignment,
  AssignmentAction,
  AssignmentSchema,
} from "../gen/cube/v1/worker_service_pb.js";
import { FakeClock } from "./fake-clock.js";
import { FakeWorker, harness, reach, runningOnW1WithSpare, spec } from "./manager-harness.js";

const SECRET = "s3cr3t-db-password";
const secretSpec = () => spec({ secretEnv: { DB_PASSWORD: SECRET }, env: { PLAIN: "x" } });

/** What went down the stream, as the worker decodes it. */
function wire(a: Assignment): string {
  return toJsonString(AssignmentSchema, a);
}

function checkStop(t: ExecutionContext, a: Assignment, id: string, generation: bigint) {
  t.is(a.action, AssignmentAction.STOP);
  t.is(a.task?.id, id);
  t.is(a.task?.generation, generation);
  t.is(a.task?.spec, undefined, "no spec in a STOP");
  t.false(wire(a).includes(SECRET), "no secret value in a STOP");
  t.false(wire(a).includes("DB_PASSWORD"), "not even the secret's name");
}

test("StopTask: the RUN carried the secret, the STOP carries the id and generation only", async (t) => {
  const h = await harness(t);
  const w = new FakeWorker("w1");
  await w.connect(h.transport);
  await h.tasks.runTask({ id: "t", spec: secretSpec() });
  await reach(h, "t", TaskState.RUNNING);
  const run = await w.waitFor((a) => a.action === AssignmentAction.RUN);
  t.is(run.task?.spec?.secretEnv.DB_PASSWORD, SECRET, "a RUN still has what the worker needs");
  await h.tasks.stopTask({ id: "t" });
  const stop = await w.waitFor((a) => a.action === AssignmentAction.STOP);
  checkStop(t, stop, "t", 1n);
  t.truthy(stop.stopGrace, "the stop grace comes with the assignment");
  await reach(h, "t", TaskState.COMPLETED);
});

test("a STOP's grace is the task's stop_timeout (0s included), else the manager's default", async (t) => {
  const h = await harness(t, { stopGraceMs: 7000 });
  const w = new FakeWorker("w1");
  await w.connect(h.transport);
  const cases = [
    ["slow", durationFromMs(90_000), 90_000],
    ["now", durationFromMs(0), 0],
    ["plain", undefined, 7000],
  ] as const;
  for (const [id, stopTimeout, want] of cases) {
    const r = await h.tasks.runTask({ id, spec: spec({ stopTimeout }) });
    t.is(
      r.task?.spec?.stopTimeout === undefined,
      stopTimeout === undefined,
      `${id}: kept as given`,
    );
    await reach(h, id, TaskState.RUNNING);
    await h.tasks.stopTask({ id });
    const stop = await w.waitFor((a) => a.action === AssignmentAction.STOP && a.task?.id === id);
    t.truthy(stop.stopGrace, `${id}: a STOP always says its grace`);
    t.is(stop.stopGrace && durationMs(stop.stopGrace), want, id);
  }
  const tooLong = await h.tasks
    .runTask({ spec: spec({ stopTimeout: durationFromMs(2 * 3600_000) }) })
    .catch((e: unknown) => ConnectError.from(e));
  t.true(tooLong instanceof ConnectError && tooLong.code === Code.InvalidArgument);
  t.is((tooLong as ConnectError).rawMessage, "spec.stop_timeout: at most 1h");
});

/** Task "t" (with a secret) RUNNING on w1, and a second worker w2 that fits it. */
async function twoWorkers(t: ExecutionContext, options: Parameters<typeof harness>[1]) {
  const h = await harness(t, options);
  return { h, ...(await runningOnW1WithSpare(h, secretSpec())) };
}

test("a drain's STOP of the task it moves carries no spec", async (t) => {
  const { h, w1, w2 } = await twoWorkers(t, {
    clock: new FakeClock(),
    heartbeatTimeoutMs: 3_600_000,
  });
  await createClient(NodeService, h.transport).drainNode({ name: "w1" });
  const stop = await w1.waitFor((a) => a.action === AssignmentAction.STOP);
  checkStop(t, stop, "t", 1n);
  const run = await w2.waitFor((a) => a.action === AssignmentAction.RUN);
  t.is(run.task?.spec?.secretEnv.DB_PASSWORD, SECRET);
});

test("the reconcile's STOP of a copy that came back carries no spec", async (t) => {
  const clock = new FakeClock();
  const { h, w1 } = await twoWorkers(t, {
    clock,
    downGraceMs: 1000,
    heartbeatTimeoutMs: 600_000,
  });
  w1.disconnect();
  await reach(h, "t", TaskState.UNKNOWN);
  clock.advance(1000);
  await reach(h, "t", TaskState.RUNNING, 2n);
  // w1 is back with the copy it ran: the replacement runs, so that copy is stopped.
  const back = new FakeWorker("w1", { seq: 1n });
  await back.connect(h.transport, [{ taskId: "t", generation: 1n, state: TaskState.RUNNING }]);
  const stop = await back.waitFor((a) => a.task?.id === "t");
  checkStop(t, stop, "t", 1n);
});
