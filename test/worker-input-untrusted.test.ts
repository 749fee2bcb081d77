/**
 * What a worker reports reaches people's terminals only as printable text, and only about
 * tasks it holds: on a real manager with tokens, over real sockets, a worker holding its own
 * credential sends raw stream messages (as a compromised worker, or Docker's and a registry's
 * error messages passed on, would) carrying escape sequences and a right-to-left override
 * (kubectl's CVE-2021-25743). Reasons, health, progress and engine messages, container ids
 * and port addresses come back from every read API escaped; a health report of a task that is
 * not RUNNING changes nothing; a metrics sample speaks only for the worker's own tasks.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import test from "ava";
import { MetricsService, type TaskMetricsSchema } from "../gen/cube/v1/metrics_pb.js";
import { NodeService } from "../gen/cube/v1/node_service_pb.js";
import {
  HealthStatus,
  Protocol,
  RestartMode,
  TaskEventType,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { TokenService } from "../gen/cube/v1/token_service_pb.js";
import { EngineStatus } from "../gen/cube/v1/worker_pb.js";
import {
  type ConnectRequest,
  ConnectRequestSchema,
  type ConnectResponse,
  TaskUpdateSchema,
  WorkerService,
} from "../gen/cube/v1/worker_service_pb.js";
import { BIDI_CHARACTERS, CONTROL_CHARACTERS } from "../lib/printable-text.js";
import { grpcTransport } from "../lib/rpc/client.js";
import type { ManagerHandle } from "../manager/index.js";
import { AsyncQueue } from "../worker/async-queue.js";
import { startTestManager } from "./fixtures.js";
import { eventually } from "./manager-harness.js";

/** The QA's message: a right-to-left override, then an escape sequence that paints green. */
const EVIL = "\u202eevil\u001b[1;32m health";
/** The same, as the manager keeps and shows it. */
const SHOWN = "\\u202eevil\\u001b[1;32m health";

/** A task with a health check (which needs a published port to check). */
const CHECKED = {
  image: "cube/httpd:local",
  ports: [{ containerPort: 80 }],
  healthCheck: { path: "/health" },
};

/** No control or bidirectional character (lib/printable-text.ts's sets) anywhere in `text`. */
function printableOnly(text: string): boolean {
  return !CONTROL_CHARACTERS.test(text) && !BIDI_CHARACTERS.test(text);
}

/** A JSON view of anything protobuf-es made (bigints as strings). */
function json(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? String(v) : v));
}

/**
 * A worker that joined with the manager's join token and speaks on its stream with its own
 * credential, message by message as a test scripts them.
 */
class RawWorker {
  readonly received: ConnectResponse["message"][] = [];
  readonly #up = new AsyncQueue<ConnectRequest>();
  #seq = 0n;

  private constructor(
    readonly id: string,
    credential: string,
    address: string,
  ) {
    this.send({ case: "register", value: { workerId: id, name: id, capacity: { cpu: 16 } } });
    this.send({ case: "inventory", value: {} });
    const down = createClient(WorkerService, grpcTransport(address, { token: credential }));
    (async () => {
      for await (const response of down.connect(this.#up)) this.#receive(response.message);
    })().catch(() => undefined);
  }

  static async join(m: ManagerHandle, id: string): Promise<RawWorker> {
    const tokens = createClient(TokenService, grpcTransport(m.address));
    const { secret } = await tokens.joinWorker(
      { workerId: id },
      { headers: { authorization: `Bearer ${m.workerToken}` } },
    );
    return new RawWorker(id, secret, m.address);
  }

  send(message: MessageInitShape<typeof ConnectRequestSchema>["message"]): void {
    this.#up.push(create(ConnectRequestSchema, { message }));
  }

  /** A TaskUpdate with the next seq. */
  update(init: MessageInitShape<typeof TaskUpdateSchema>): void {
    this.#seq += 1n;
    const value = create(TaskUpdateSchema, init);
    value.seq = this.#seq;
    this.send({ case: "update", value });
  }

  /** The generation of the RUN of `taskId` the manager sent. */
  async runOf(taskId: string): Promise<bigint> {
    return eventually(() => {
      for (const m of this.received) {
        if (m.case === "assignment" && m.value.task?.id === taskId) return m.value.task.generation;
      }
      throw new Error(`no RUN of ${taskId} yet`);
    }, 10_000);
  }

  close(): void {
    this.#up.close();
  }

  #receive(message: ConnectResponse["message"]): void {
    if (message.case === "batch") {
      for (const inner of message.value.messages) this.#receive(inner.message);
    } else {
      this.received.push(message);
    }
  }
}

async function bed(t: Parameters<typeof startTestManager>[0]) {
  // A scripted worker sends no heartbeats: a slow machine must not take it for dead.
  const m = await startTestManager(t, { heartbeatTimeoutMs: 60_000 });
  const transport = grpcTransport(m.address, { token: m.adminToken });
  return {
    m,
    tasks: createClient(TaskService, transport),
    workers: createClient(WorkerService, transport),
    metrics: createClient(MetricsService, transport),
    nodes: createClient(NodeService, transport),
  };
}

test("a worker's reports are stored and shown with their control and bidirectional characters escaped", async (t) => {
  const { m, tasks, workers } = await bed(t);
  const w = await RawWorker.join(m, "w-evil");
  t.teardown(() => w.close());
  await eventually(async () => {
    const { worker } = await workers.getWorker({ id: "w-evil" });
    if (!worker) throw new Error("not registered yet");
  }, 10_000);
  await tasks.runTask({ id: "web", spec: CHECKED });
  const generation = await w.runOf("web");

  w.send({ case: "progress", value: { taskId: "web", generation, message: `pulling ${EVIL}` } });
  w.update({
    taskId: "web",
    generation,
    state: TaskState.RUNNING,
    reason: EVIL,
    containerId: `c0ffee${EVIL}`,
    ports: [{ containerPort: 80, hostPort: 8080, protocol: Protocol.TCP, hostIp: EVIL }],
    time: timestampNow(),
  });
  w.send({
    case: "health",
    value: { taskId: "web", generation, status: HealthStatus.HEALTHY, message: EVIL },
  });
  w.send({
    case: "engine",
    value: { status: EngineStatus.DOWN, reason: `docker says ${EVIL}` },
  });

  const events = await eventually(async () => {
    const { events } = await tasks.listTaskEvents({ taskId: "web" });
    if (!events.some((e) => e.type === TaskEventType.HEALTH_CHANGED)) throw new Error("not yet");
    return events;
  }, 10_000);
  const { task } = await tasks.getTask({ id: "web" });
  const { worker } = await eventually(async () => {
    const got = await workers.getWorker({ id: "w-evil" });
    if (got.worker?.engine?.status !== EngineStatus.DOWN) throw new Error("engine not DOWN yet");
    return got;
  }, 10_000);

  const message = (type: TaskEventType) => events.find((e) => e.type === type)?.message;
  t.is(message(TaskEventType.PROGRESS), `pulling ${SHOWN}`);
  t.is(message(TaskEventType.HEALTH_CHANGED), SHOWN);
  t.is(
    events.find(
      (e) => e.type === TaskEventType.STATE_CHANGED && e.task?.state === TaskState.RUNNING,
    )?.message,
    SHOWN,
  );
  t.is(task?.reason, SHOWN);
  t.is(task?.containerId, `c0ffee${SHOWN}`);
  t.is(task?.ports[0]?.hostIp, SHOWN);
  t.is(worker?.engine?.reason, `docker says ${SHOWN}`);
  for (const [what, value] of [
    ["ListTaskEvents", events],
    ["GetTask", task],
    ["GetWorker", worker],
  ] as const) {
    t.true(printableOnly(json(value)), `${what}: ${json(value)}`);
  }
});

test("a health report of a task that is not RUNNING is ignored: an UNHEALTHY SCHEDULED task is not restarted", async (t) => {
  const { m, tasks } = await bed(t);
  const w = await RawWorker.join(m, "w1");
  t.teardown(() => w.close());
  await tasks.runTask({
    id: "api",
    spec: { ...CHECKED, restartPolicy: { mode: RestartMode.ALWAYS } },
  });
  const generation = await w.runOf("api");
  w.send({
    case: "health",
    value: { taskId: "api", generation, status: HealthStatus.UNHEALTHY, message: "HTTP 500" },
  });
  // Messages of one stream are applied in order: once this progress is recorded, the health
  // report before it has been looked at.
  w.send({ case: "progress", value: { taskId: "api", generation, message: "pulling" } });
  const events = await eventually(async () => {
    const { events } = await tasks.listTaskEvents({ taskId: "api" });
    if (!events.some((e) => e.type === TaskEventType.PROGRESS)) throw new Error("not yet");
    return events;
  }, 10_000);
  t.deepEqual(
    events.map((e) => TaskEventType[e.type]),
    ["CREATED", "STATE_CHANGED", "PROGRESS"],
    "no HEALTH_CHANGED, no restart",
  );
  const { task } = await tasks.getTask({ id: "api" });
  t.is(task?.state, TaskState.SCHEDULED);
  t.is(task?.health, HealthStatus.UNSPECIFIED);
  t.is(task?.generation, generation);
  t.is(task?.restartCount, 0);

  // Once RUNNING, the same report counts.
  w.update({ taskId: "api", generation, state: TaskState.RUNNING, containerId: "c1" });
  w.send({
    case: "health",
    value: { taskId: "api", generation, status: HealthStatus.HEALTHY, message: "HTTP 200" },
  });
  await eventually(async () => {
    const { task } = await tasks.getTask({ id: "api" });
    if (task?.health !== HealthStatus.HEALTHY) throw new Error("not HEALTHY yet");
  }, 10_000);
  t.pass();
});

test("a worker's metrics sample speaks for its own tasks only, in its own name, with numbers clamped", async (t) => {
  const { m, tasks, metrics, nodes } = await bed(t);
  const wa = await RawWorker.join(m, "wa");
  t.teardown(() => wa.close());
  await tasks.runTask({ id: "mine", spec: { image: "cube/httpd:local" } });
  await wa.runOf("mine");
  // The next task can only go to wb.
  await nodes.cordonNode({ name: "wa" });
  const wb = await RawWorker.join(m, "wb");
  t.teardown(() => wb.close());
  await eventually(async () => {
    await tasks.runTask({ id: "theirs", spec: { image: "cube/httpd:local" } });
  }, 10_000);
  await wb.runOf("theirs");

  const sample = (init: MessageInitShape<typeof TaskMetricsSchema>) => init;
  wb.send({
    case: "stats",
    value: {
      node: { cpuCount: 2, cpuPercent: 10 },
      tasks: [sample({ taskId: "theirs", workerId: "wb", containerId: "real", cpuPercent: 12.5 })],
    },
  });
  await eventually(async () => {
    const { metrics: got } = await metrics.listTaskMetrics({ taskId: "theirs" });
    if (got.length === 0) throw new Error("no sample yet");
  }, 10_000);
  // wa speaks for wb's task (in wb's name), for a task nobody runs, and for its own task
  // twice, with numbers no machine gives.
  wa.send({
    case: "stats",
    value: {
      node: {
        workerId: "wb",
        cpuCount: 2,
        cpuPercent: Number.NaN,
        load1: -5,
        load5: Number.POSITIVE_INFINITY,
        load15: 1.5,
      },
      tasks: [
        sample({ taskId: "mine", workerId: "wa", cpuPercent: -3 }),
        sample({
          taskId: "theirs",
          workerId: "wb",
          containerId: "\u202eforged",
          cpuPercent: 99999,
        }),
        sample({ taskId: "mine", workerId: "wb", containerId: "c\u001b[31m", cpuPercent: 99999 }),
        sample({ taskId: "nobody", workerId: "wa", cpuPercent: 1 }),
      ],
    },
  });
  const own = await eventually(async () => {
    const { metrics: got } = await metrics.listTaskMetrics({ workerId: "wa" });
    if (got.length === 0) throw new Error("no sample of wa yet");
    return got;
  }, 10_000);
  t.deepEqual(
    own.map((x) => [x.taskId, x.workerId, x.containerId, x.cpuPercent]),
    [["mine", "wa", "c\\u001b[31m", 200]],
    "its one task, in its name, the last sample winning, cpu at most 100 × its 2 cores",
  );
  const theirs = await metrics.listTaskMetrics({ taskId: "theirs" });
  t.deepEqual(
    theirs.metrics.map((x) => [x.workerId, x.containerId, x.cpuPercent]),
    [["wb", "real", 12.5]],
    "wb's sample alone",
  );
  const { metrics: node } = await metrics.getNodeMetrics({ workerId: "wa" });
  t.deepEqual(
    [node?.workerId, node?.cpuCount, node?.cpuPercent, node?.load1, node?.load5, node?.load15],
    ["wa", 2, 0, 0, 0, 1.5],
  );
  t.is((await metrics.getNodeMetrics({ workerId: "wb" })).metrics?.cpuPercent, 10, "wb's own");
});
