/**
 * How lost contact and an absent engine show: `cube ps` STATE of an UNKNOWN task, `cube
 * nodes` STATUS of a worker without its engine, the event word of a stopped copy; and the
 * worker's engine monitor going DOWN and back UP as its pings fail and answer.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import test from "ava";
import pc from "picocolors";
import { eventSummary, eventTypeName } from "../cli/format-event.js";
import { stateLabel } from "../cli/format-task.js";
import { WORKER_HEAD, workerRow, workerStatusLabel } from "../cli/format-worker.js";
import { parseStates } from "../cli/parse-enum.js";
import { TaskEventSchema, TaskEventType, TaskSchema, TaskState } from "../gen/cube/v1/task_pb.js";
import { EngineStatus, WorkerSchema, WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { createLogger } from "../lib/logger.js";
import { EngineMonitor } from "../worker/tasks/engine-monitor.js";

const plain = pc.createColors(false);

test("an UNKNOWN task reads how long ago contact was lost", (t) => {
  const now = 1_800_000_000_000;
  const task = create(TaskSchema, {
    state: TaskState.UNKNOWN,
    lostContactAt: timestampFromMs(now - 7000),
  });
  t.is(stateLabel(task, plain, now), "UNKNOWN (lost contact 7s ago)");
  t.is(stateLabel(task, plain), "UNKNOWN (lost contact)");
  t.deepEqual(parseStates("unknown,running"), [TaskState.UNKNOWN, TaskState.RUNNING]);
});

test("a worker without its engine reads READY, engine down", (t) => {
  t.is(workerStatusLabel(WorkerStatus.READY, plain, EngineStatus.DOWN), "READY, engine down");
  t.is(workerStatusLabel(WorkerStatus.READY, plain, EngineStatus.UP), "READY");
  t.is(workerStatusLabel(WorkerStatus.DOWN, plain, EngineStatus.DOWN), "DOWN");
});

test("AGENT UP: how long the worker's agent has run, so a restarted agent shows", (t) => {
  const now = 1_800_000_000_000;
  const col = WORKER_HEAD.indexOf("AGENT UP");
  const row = (status: WorkerStatus, startedMsAgo?: number) =>
    workerRow(
      create(WorkerSchema, {
        name: "w",
        status,
        ...(startedMsAgo === undefined
          ? {}
          : { agentStartedAt: timestampFromMs(now - startedMsAgo) }),
      }),
      { now, colors: plain },
    )[col];
  t.is(row(WorkerStatus.READY, 4_000), "4s");
  t.is(row(WorkerStatus.READY, 3 * 3_600_000), "3h");
  // Not connected, or an agent too old to say: nothing to show.
  t.is(row(WorkerStatus.DISCONNECTED, 4_000), "-");
  t.is(row(WorkerStatus.READY), "-");
});

test("a stopped copy is a 'copy' event whose message says which and why", (t) => {
  const event = create(TaskEventSchema, {
    type: TaskEventType.COPY_STOPPED,
    task: { id: "t", state: TaskState.RUNNING },
    message: "stopping the copy on wa (generation 1) that came back: the replacement is RUNNING",
  });
  t.is(eventTypeName(event.type), "copy");
  t.is(eventSummary(event), event.message);
});

test("the engine monitor: a failed ping after a sign makes it DOWN; the first answer, UP again", async (t) => {
  let answers = false;
  const monitor = new EngineMonitor({
    ping: async () => {
      if (!answers) throw new Error("the Docker engine does not answer: connect ENOENT");
    },
    logger: createLogger("test", "silent"),
    backoff: { baseMs: 5, maxMs: 10 },
  });
  t.teardown(() => monitor.close());
  const changes: EngineStatus[] = [];
  monitor.on("change", (r) => changes.push(r.status));
  let up = 0;
  monitor.on("up", () => up++);
  t.true(monitor.up, "up until shown otherwise");
  await monitor.whenUp();
  monitor.suspect("the event stream ended");
  await new Promise((r) => setTimeout(r, 30));
  t.false(monitor.up);
  t.is(monitor.report.reason, "the Docker engine does not answer: connect ENOENT");
  const back = monitor.whenUp();
  monitor.suspect("again"); // one check at a time: ignored while it polls
  answers = true;
  await back;
  t.true(monitor.up);
  t.deepEqual(changes, [EngineStatus.DOWN, EngineStatus.UP]);
  t.is(up, 1);
  monitor.suspect("a glitch the ping does not see");
  await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(changes, [EngineStatus.DOWN, EngineStatus.UP], "an engine that answers stays UP");
});
