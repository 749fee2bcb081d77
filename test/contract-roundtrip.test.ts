/**
 * The guard against silent drops (issue 13): every message of cube.v1 and cube.store.v1,
 * with every field set to a random value, goes through every path the product carries it
 * on — the codecs, the manager's LevelDB store, RunTasks, GetTask, ListTaskEvents,
 * WatchTasks, the worker stream both ways, workers and metrics — and must come back whole.
 * The samples are made from the descriptors (test/random-message.ts), so a field added to a
 * .proto file is covered with no edit here; where a field rightly does not travel on, the
 * exception is listed with its reason. The last tests show that each check fails when a
 * path drops one field.
 *
 * Seeded (CUBE_CONTRACT_SEED, default below) so a failure can be replayed.
 */
import { readdir } from "node:fs/promises";
import {
  clone,
  create,
  type DescField,
  type DescFile,
  type DescMessage,
  fromBinary,
  fromJsonString,
  type MessageInitShape,
  type MessageShape,
  toBinary,
  toJsonString,
} from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import test from "ava";
import { file_cube_store_v1_records } from "../gen/cube/store/v1/records_pb.js";
import {
  file_cube_v1_metrics,
  ListTaskMetricsResponseSchema,
  MetricsService,
  NodeMetricsSchema,
} from "../gen/cube/v1/metrics_pb.js";
import {
  file_cube_v1_task,
  HealthStatus,
  Protocol,
  type Task,
  type TaskEvent,
  TaskEventSchema,
  TaskEventType,
  TaskSchema,
  type TaskSpec,
  TaskSpecSchema,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import {
  file_cube_v1_task_service,
  type RunTasksRequest,
  RunTasksRequestSchema,
  TaskService,
  TaskView,
  type WatchTasksRequestSchema,
} from "../gen/cube/v1/task_service_pb.js";
import {
  EngineStatus,
  file_cube_v1_worker,
  type Worker,
  WorkerSchema,
} from "../gen/cube/v1/worker_pb.js";
import {
  AssignmentAction,
  type ConnectRequest,
  ConnectRequestSchema,
  type ConnectResponse,
  file_cube_v1_worker_service,
  HealthReportSchema,
  InventorySchema,
  type Register,
  RegisterSchema,
  StatsSchema,
  TaskUpdateSchema,
  WorkerService,
} from "../gen/cube/v1/worker_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { redactSpec, redactTask } from "../lib/redact.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { startServer } from "../lib/rpc/server.js";
import { MANAGER_FILES, managerRoutes } from "../manager/api/routes.js";
import { openControlPlane } from "../manager/index.js";
import { withSpec } from "../manager/rules/task-ops.js";
import { LevelStore } from "../manager/store/level-store.js";
import type { Store } from "../manager/store/store.js";
import { AsyncQueue } from "../worker/async-queue.js";
import { tempDir } from "./fixtures.js";
import { eventually } from "./manager-harness.js";
import {
  chosenCases,
  diff,
  missingFields,
  oneofCases,
  oneofVariants,
  type Random,
  randomMessage,
  seededRandom,
  withoutField,
} from "./random-message.js";

const SEED = Number(process.env.CUBE_CONTRACT_SEED ?? 20_261_213);

/**
 * cube's own contracts: the generated descriptor of every .proto file under proto/cube, found
 * on disk, so a file added there is walked with no edit here.
 */
async function contractFiles(): Promise<DescFile[]> {
  const names = await readdir(new URL("../proto/cube", import.meta.url), { recursive: true });
  const protos = names.filter((name) => name.endsWith(".proto")).sort();
  return Promise.all(
    protos.map(async (name) => {
      const base = `cube/${name.slice(0, -".proto".length)}`;
      const generated = (await import(`../gen/${base}_pb.js`)) as Record<string, unknown>;
      const file = generated[`file_${base.replaceAll("/", "_")}`] as DescFile | undefined;
      if (!file) throw new Error(`gen/${base}_pb.ts holds no descriptor: run npm run generate`);
      return file;
    }),
  );
}

const FILES = await contractFiles();

/** Every message declared in `files`, nested ones included. */
function messagesOf(files: readonly DescFile[]): DescMessage[] {
  return files.flatMap((file) =>
    [...nestedTypes(file)].filter((d): d is DescMessage => d.kind === "message"),
  );
}

/** The path of a difference line of {@link diff} (what comes before its first ": "). */
const pathOf = (line: string) => line.slice(0, line.indexOf(": "));

test("every message, every field, every oneof case: binary and JSON codecs keep all of it", (t) => {
  const random = seededRandom(SEED);
  const failures: string[] = [];
  const everyCase = new Set<string>();
  const chosen = new Set<string>();
  const messages = messagesOf(FILES);
  let samples = 0;
  for (const desc of messages) {
    for (const c of oneofCases(desc)) everyCase.add(c);
    for (let variant = 0; variant < oneofVariants(desc); variant++) {
      const sample = randomMessage(desc, random, { variant });
      samples++;
      for (const c of chosenCases(desc, sample)) chosen.add(c);
      for (const path of missingFields(desc, sample)) {
        failures.push(`${desc.typeName}: the sample leaves ${path} unset`);
      }
      // The codecs of gRPC and Connect binary, and of Connect JSON (and `cube … -o json`).
      const binary = fromBinary(desc, toBinary(desc, sample));
      failures.push(...diff(desc, binary, sample, `${desc.typeName} binary → `));
      const json = fromJsonString(desc, toJsonString(desc, sample));
      failures.push(...diff(desc, json, sample, `${desc.typeName} JSON → `));
    }
  }
  t.deepEqual(failures, []);
  t.deepEqual(
    [...everyCase].filter((c) => !chosen.has(c)),
    [],
    "every case of every oneof was sampled",
  );
  // The walk itself: it must find the files, and reach nested messages and oneofs.
  const found = FILES.map((f) => f.proto.name);
  for (const file of [
    file_cube_v1_task,
    file_cube_v1_task_service,
    file_cube_v1_worker,
    file_cube_v1_worker_service,
    file_cube_v1_metrics,
    file_cube_store_v1_records,
  ]) {
    t.true(found.includes(file.proto.name), `${file.proto.name} is walked`);
  }
  t.true(messages.some((d) => d.typeName === "cube.store.v1.EventBlob"));
  t.true(everyCase.has("cube.v1.ConnectRequest.batch"));
  t.log(`${samples} samples of ${messages.length} messages, seed ${SEED}`);
});

test("missingFields and diff name a field the filler skipped or a codec dropped", (t) => {
  const random = seededRandom(SEED + 1);
  const skipped = randomMessage(TaskSchema, random, {
    skip: (f) => f.parent.typeName === "cube.v1.PortMapping" && f.name === "host_ip",
  });
  t.deepEqual(
    missingFields(TaskSchema, skipped),
    skipped.spec?.ports.map((_, i) => `spec.ports[${i}].host_ip`),
  );
  t.deepEqual(missingFields(ConnectRequestSchema, create(ConnectRequestSchema)), [
    "message (oneof)",
  ]);

  const sample = randomMessage(TaskSchema, random);
  const lossyCodec = (task: Task) =>
    withoutField(
      TaskSchema,
      fromBinary(TaskSchema, toBinary(TaskSchema, task)),
      "spec.health_check.failure_threshold",
    );
  const differences = diff(TaskSchema, lossyCodec(sample), sample);
  t.deepEqual(differences, [
    `spec.health_check.failure_threshold: unset (expected ${sample.spec?.healthCheck?.failureThreshold})`,
  ]);

  const changed = clone(TaskSchema, sample);
  const [key] = Object.keys(changed.spec?.labels ?? {});
  if (changed.spec && key !== undefined) changed.spec.labels[key] = "changed";
  t.deepEqual(diff(TaskSchema, changed, sample).map(pathOf), [
    `spec.labels[${JSON.stringify(key)}]`,
  ]);
});

/** What the store test writes: one task, one event of it, one worker. */
interface StoreSample {
  readonly task: Task;
  readonly createdRevision: bigint;
  /** The token id that created the task (records.proto TaskRecord.created_by). */
  readonly createdBy: string;
  readonly event: TaskEvent;
  readonly worker: Worker;
  readonly lastUpdateSeq: bigint;
}

function storeSample(random: Random): StoreSample {
  const task = randomMessage(TaskSchema, random);
  // Ids are keys (t/<revision>/<id>, w/<id>): the manager lets no "/" into them.
  task.id = random.token(40);
  const event = randomMessage(TaskEventSchema, random);
  // An event's task is the same task at another moment: its id and (never-changing) spec.
  event.task = { ...(event.task as Task), id: task.id, spec: task.spec };
  const worker = randomMessage(WorkerSchema, random);
  worker.id = random.token(40);
  return {
    task,
    createdRevision: random.bits64() || 1n,
    createdBy: random.token(12),
    event,
    worker,
    lastUpdateSeq: random.bits64() || 1n,
  };
}

/**
 * Writes `sample` into a LevelStore in `dir` (through `wrap`), closes it, opens it again and
 * reads everything back; returns the differences.
 */
async function throughLevelStore(
  dir: string,
  sample: StoreSample,
  wrap: (store: Store) => Store = (store) => store,
): Promise<string[]> {
  const writer = wrap(await LevelStore.open(dir));
  await writer.load();
  writer.putTask({
    task: sample.task,
    createdRevision: sample.createdRevision,
    createdBy: sample.createdBy,
  });
  writer.putEvent(sample.event);
  writer.putWorker({ worker: sample.worker, lastUpdateSeq: sample.lastUpdateSeq });
  await writer.flush();
  await writer.close();

  const store = await LevelStore.open(dir);
  try {
    const loaded = await store.load();
    const out: string[] = [];
    const count = (what: string, n: number) => {
      if (n !== 1) out.push(`${what}: ${n} (expected 1)`);
    };
    count("load → tasks", loaded.tasks.length);
    count("load → workers", loaded.workers.length);
    const [record] = loaded.tasks;
    const [worker] = loaded.workers;
    out.push(...diff(TaskSchema, record?.task, sample.task, "load → tasks[0].task."));
    if (record?.createdRevision !== sample.createdRevision) {
      out.push(`load → tasks[0].created_revision: ${record?.createdRevision}`);
    }
    if (record?.createdBy !== sample.createdBy) {
      out.push(`load → tasks[0].created_by: ${record?.createdBy}`);
    }
    out.push(...diff(WorkerSchema, worker?.worker, sample.worker, "load → workers[0].worker."));
    if (worker?.lastUpdateSeq !== sample.lastUpdateSeq) {
      out.push(`load → workers[0].last_update_seq: ${worker?.lastUpdateSeq}`);
    }
    if (loaded.revision !== sample.event.revision) {
      out.push(`load → revision: ${loaded.revision} (expected ${sample.event.revision})`);
    }
    // Events are stored without their task's spec (records.proto: a spec never changes), and
    // the readers put the task's spec back (withSpec, as ListTaskEvents and WatchTasks do):
    // compared as stored without it, and as read with it, against the event as written.
    const stored = { ...sample.event, task: { ...(sample.event.task as Task), spec: undefined } };
    for (const [how, events] of [
      ["taskEvents", await store.taskEvents(sample.task.id, 0n, 10)],
      ["eventsAfter", await store.eventsAfter(0n, 10)],
    ] as const) {
      count(`${how} → events`, events.length);
      out.push(...diff(TaskEventSchema, events[0], stored, `${how} → events[0].`));
      const read = events[0] && withSpec(events[0], record?.task);
      out.push(...diff(TaskEventSchema, read, sample.event, `${how} + withSpec → events[0].`));
    }
    return out;
  } finally {
    await store.close();
  }
}

test("the LevelDB store keeps every field of tasks, events and workers across a reopen", async (t) => {
  // The MemoryStore keeps the objects it is given (no copy, no codec): nothing to drop there.
  t.deepEqual(await throughLevelStore(await tempDir(t), storeSample(seededRandom(SEED + 2))), []);
});

/** `store`, except that it loses one field of every task it is given. */
function droppingTaskField(store: Store, path: string): Store {
  const putTask: Store["putTask"] = (record) =>
    store.putTask({ ...record, task: withoutField(TaskSchema, record.task, path) });
  return new Proxy(store, {
    get(target, property) {
      if (property === "putTask") return putTask;
      const value = Reflect.get(target, property, target);
      // Bound: LevelStore's methods reach its private fields through `this`.
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

test("the store check fails when the store drops a field", async (t) => {
  const sample = storeSample(seededRandom(SEED + 2));
  const differences = await throughLevelStore(await tempDir(t), sample, (store) =>
    droppingTaskField(store, "spec.health_check.failure_threshold"),
  );
  t.deepEqual(differences.map(pathOf), [
    "load → tasks[0].task.spec.health_check.failure_threshold",
    // The events' readers take the spec from the (damaged) task.
    "taskEvents + withSpec → events[0].task.spec.health_check.failure_threshold",
    "eventsAfter + withSpec → events[0].task.spec.health_check.failure_threshold",
  ]);
});

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} is unset`);
  return value;
}

/** A random duration of at most `maxSeconds` (nanos random too). */
function overlayDuration(d: Duration | undefined, random: Random, maxSeconds: number): void {
  const duration = need(d, "duration");
  duration.seconds = BigInt(random.int(1, maxSeconds - 1));
  duration.nanos = random.int(1, 999_999_999);
}

/**
 * A TaskSpec with every field random, made valid for manager/rules/validate-spec.ts: only
 * what validation constrains is overlaid (image, ports, resources, restart policy, health
 * check, stop timeout), every other field keeps its random value — name, command, args, env and labels are
 * valid as they come (Random.text has no whitespace, control character or "="). A field added
 * to TaskSpec later is therefore sampled, sent and compared with no edit here.
 */
function validSpec(random: Random): TaskSpec {
  const spec = randomMessage(TaskSpecSchema, random);
  // An image reference the engine's grammar takes: lowercase path, a tag.
  spec.image = `registry-${random.int(1, 99)}.local:${random.int(1, 65535)}/team/app-${random.int(0, 1e6)}:v${random.int(0, 99)}`;
  const hostPorts = new Set<number>();
  for (const port of spec.ports) {
    port.containerPort = random.int(1, 65535);
    do port.hostPort = random.int(1, 65535);
    while (hostPorts.has(port.hostPort));
    hostPorts.add(port.hostPort);
    port.hostIp = `127.${random.int(0, 255)}.${random.int(0, 255)}.${random.int(1, 254)}`;
  }
  // Small enough that every task of the test fits on the one worker.
  const resources = need(spec.resources, "spec.resources");
  resources.cpu = random.int(10, 1000) / 1000; // 10m at least, Docker's minimum
  resources.memoryBytes = BigInt(random.int(6 << 20, 1 << 30));
  resources.diskBytes = BigInt(random.int(1, 1 << 30));
  const restart = need(spec.restartPolicy, "spec.restart_policy");
  restart.maxRestarts = random.int(1, 1000);
  overlayDuration(restart.backoff, random, 3600);
  overlayDuration(restart.maxBackoff, random, 86_400 - 3600);
  need(restart.maxBackoff, "max_backoff").seconds += 3600n; // never below backoff, below 24 h
  const health = need(spec.healthCheck, "spec.health_check");
  health.path = `/${random.token()}`;
  const checked = need(spec.ports[0], "spec.ports[0]");
  checked.protocol = Protocol.TCP; // an HTTP check needs TCP
  health.port = checked.containerPort;
  overlayDuration(health.interval, random, 86_400);
  overlayDuration(health.timeout, random, 86_400);
  overlayDuration(health.startPeriod, random, 86_400);
  health.failureThreshold = random.int(1, 100);
  overlayDuration(spec.stopTimeout, random, 3600 - 1);
  return spec;
}

/** A random RunTasksRequest of 1–3 valid requests, each with every field set. */
function runTasksRequest(random: Random): RunTasksRequest {
  const request = randomMessage(RunTasksRequestSchema, random);
  request.view = TaskView.FULL; // BASIC leaves the spec out of the answer, by design
  request.requests.forEach((r, i) => {
    r.id = `${random.token(40)}-${i}`;
    r.spec = validSpec(random);
  });
  return request;
}

/** RunTasks and GetTask of `request` through `client`: the specs' differences, and the tasks. */
async function runAndGet(
  client: Client<typeof TaskService>,
  request: RunTasksRequest,
  label: string,
): Promise<{ differences: string[]; tasks: Task[] }> {
  const differences: string[] = [];
  const { tasks } = await client.runTasks(request);
  for (const [i, r] of request.requests.entries()) {
    // Read APIs show every field but secret values, which read "<redacted>" (lib/redact.ts).
    const sent = redactSpec(need(r.spec, "spec"));
    differences.push(
      ...diff(TaskSpecSchema, tasks[i]?.spec, sent, `${label} RunTasks → tasks[${i}].spec.`),
    );
    const { task } = await client.getTask({ id: r.id });
    differences.push(...diff(TaskSpecSchema, task?.spec, sent, `${label} GetTask → task.spec.`));
  }
  return { differences, tasks };
}

type DownCase = NonNullable<ConnectResponse["message"]["case"]>;
type DownValue<K extends DownCase> = Extract<ConnectResponse["message"], { case: K }>["value"];

/**
 * A worker scripted by the test on a real WorkerService.Connect stream: it registers with the
 * Register it is given, sends what it is told, and records what comes down (batches unpacked).
 */
class ScriptedWorker {
  readonly received: ConnectResponse["message"][] = [];
  readonly #up = new AsyncQueue<ConnectRequest>();
  readonly #reading: Promise<void>;

  constructor(transport: Transport, register: Register) {
    this.send({ case: "register", value: register });
    this.send({ case: "inventory", value: create(InventorySchema) });
    const down = createClient(WorkerService, transport).connect(this.#up);
    this.#reading = (async () => {
      for await (const response of down) this.#receive(response.message);
    })().catch(() => undefined);
  }

  send(message: ConnectRequest["message"]): void {
    this.#up.push(create(ConnectRequestSchema, { message }));
  }

  /** The first message of `kind` received that `match` accepts (waits up to 10 s). */
  async waitFor<K extends DownCase>(
    kind: K,
    match: (value: DownValue<K>) => boolean = () => true,
  ): Promise<DownValue<K>> {
    const found = await eventually<unknown>(() => {
      for (const m of this.received) {
        if (m.case === kind && match(m.value as DownValue<K>)) return m.value;
      }
      throw new Error(`no matching ${kind} among ${this.received.length} messages`);
    }, 10_000);
    return found as DownValue<K>;
  }

  async close(): Promise<void> {
    this.#up.close();
    await this.#reading;
  }

  #receive(message: ConnectResponse["message"]): void {
    if (message.case === "batch") {
      for (const inner of message.value.messages) this.#receive(inner.message);
    } else {
      this.received.push(message);
    }
  }
}

/** What {@link carried} may find: fields renamed on the way, and fields that rightly stay behind. */
interface Carriage {
  /** Sent field name → the name of the field it shows in. */
  readonly renamed?: Readonly<Record<string, string>>;
  /** Sent field name → why it does not show in the other message. */
  readonly notCarried?: Readonly<Record<string, string>>;
}

function sameType(a: DescField, b: DescField): boolean {
  const key = (f: DescField) => (f.fieldKind === "map" ? f.mapKey : undefined);
  return (
    a.fieldKind === b.fieldKind &&
    a.scalar === b.scalar &&
    a.enum?.typeName === b.enum?.typeName &&
    a.message?.typeName === b.message?.typeName &&
    key(a) === key(b)
  );
}

/**
 * Every field of `sent` must show in `shown` — a message of another type that the product
 * builds from it — under the same name or its `renamed` name, unless `notCarried` says why
 * not. A field added to the sent message later fails here until it is carried or listed.
 */
function carried<S extends DescMessage, T extends DescMessage>(
  from: S,
  sent: MessageShape<S>,
  to: T,
  shown: MessageShape<T> | undefined,
  how: Carriage,
  prefix: string,
): string[] {
  if (!shown) return [`${prefix}(message): missing`];
  const out: string[] = [];
  for (const name of [...Object.keys(how.renamed ?? {}), ...Object.keys(how.notCarried ?? {})]) {
    if (!from.fields.some((f) => f.name === name)) {
      out.push(`${prefix}${name}: listed as an exception, but ${from.name} has no such field`);
    }
  }
  const expected = clone(to, shown) as unknown as Record<string, unknown>;
  for (const f of from.fields) {
    if (how.notCarried?.[f.name] !== undefined) continue;
    const name = how.renamed?.[f.name] ?? f.name;
    const target = to.fields.find((x) => x.name === name);
    if (!target || !sameType(f, target) || f.oneof || target.oneof) {
      out.push(
        `${prefix}${name}: ${from.name}.${f.name} has no field of its type to land in (carry it, or list it in notCarried with the reason)`,
      );
      continue;
    }
    expected[target.localName] = (sent as unknown as Record<string, unknown>)[f.localName];
  }
  return [...out, ...diff(to, shown, expected as unknown as MessageShape<T>, prefix)];
}

/** The first event a WatchTasks call answers, then the call is cancelled. */
async function firstEvent(
  client: Client<typeof TaskService>,
  request: MessageInitShape<typeof WatchTasksRequestSchema>,
): Promise<TaskEvent | undefined> {
  const stop = new AbortController();
  try {
    for await (const response of client.watchTasks(request, { signal: stop.signal })) {
      return response.event;
    }
    return undefined;
  } finally {
    stop.abort();
  }
}

/**
 * A manager as startManager builds it — LevelDB store, control plane, the manager's routes on
 * a real socket — without the front door: what is checked here is what the routes, rules,
 * store and codecs do with a message, not who may send it. Returns its host:port.
 */
async function manager(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const store = await LevelStore.open(await tempDir(t));
  const cp = await openControlPlane(store, {
    logger: createLogger("manager", process.env.CUBE_LOG_LEVEL ?? "silent"),
    // The scripted worker sends no heartbeats: a slow machine must not take it for dead.
    heartbeatTimeoutMs: 60_000,
    // One event in memory: a watch that replays history reads it from the store (and puts
    // the specs back), while the live watch gets events from memory; both paths are covered.
    watchHistorySize: 1,
  });
  const server = await startServer({
    listen: "127.0.0.1:0",
    routes: managerRoutes(cp),
    files: MANAGER_FILES,
  });
  t.teardown(async () => {
    await cp.close();
    await server.close();
    await store.close();
  });
  return server.address;
}

test("the manager carries every field: RunTasks, GetTask, ListTaskEvents, WatchTasks, the worker stream both ways, workers, metrics", async (t) => {
  const random = seededRandom(SEED + 3);
  const address = await manager(t);
  const grpc = grpcTransport(address);
  const tasks = createClient(TaskService, grpc);
  const jsonTasks = createClient(
    TaskService,
    createConnectTransport({ baseUrl: `http://${address}`, httpVersion: "2" }),
  );
  const workers = createClient(WorkerService, grpc);
  const metrics = createClient(MetricsService, grpc);
  const differences: string[] = [];

  // A first task moves the revision past 0 (after_revision 0 means "only new events"), so
  // the live watch below starts from a revision and misses nothing, with no race.
  const warmUp = await tasks.runTask({ spec: { image: "cube/httpd:local" } });
  const liveEvents: TaskEvent[] = [];
  const stopWatching = new AbortController();
  t.teardown(() => stopWatching.abort());
  (async () => {
    const after = need(warmUp.task, "task").revision;
    const watch = tasks.watchTasks({ afterRevision: after }, { signal: stopWatching.signal });
    for await (const response of watch) if (response.event) liveEvents.push(response.event);
  })().catch(() => undefined);

  // Up: a Register with every field set.
  const register = randomMessage(RegisterSchema, random);
  register.workerId = random.token(40); // the manager's rule: [A-Za-z0-9._-]{1,128}
  register.callSecret = random.token(43); // printable ASCII, at most 128
  const capacity = need(register.capacity, "register.capacity");
  capacity.cpu = random.int(16, 256);
  capacity.memoryBytes = BigInt(random.int(64, 1024)) << 30n;
  capacity.diskBytes = BigInt(random.int(64, 1024)) << 30n;
  // A worker that says its container engine is down gets no task to carry.
  need(register.engine, "register.engine").status = EngineStatus.UP;
  t.deepEqual(missingFields(RegisterSchema, register), []);
  const worker = new ScriptedWorker(grpcTransport(address), register);
  t.teardown(() => worker.close());
  const registered = await worker.waitFor("registered");
  t.is(registered.workerId, register.workerId);

  // RunTasks over gRPC (binary) and over Connect JSON, GetTask through each.
  const request = runTasksRequest(random);
  for (const r of request.requests)
    t.deepEqual(missingFields(TaskSpecSchema, need(r.spec, "")), []);
  const before = (await tasks.listTasks({})).revision;
  const viaGrpc = await runAndGet(tasks, request, "gRPC");
  differences.push(...viaGrpc.differences);
  differences.push(...(await runAndGet(jsonTasks, runTasksRequest(random), "JSON")).differences);

  for (const [i, r] of request.requests.entries()) {
    const full = need(r.spec, "spec");
    // What read APIs show: secret values redacted; only the worker gets them (below).
    const sent = redactSpec(full);
    const isCreated = (e: TaskEvent | undefined) =>
      e?.task?.id === r.id && e.type === TaskEventType.CREATED;
    // ListTaskEvents: from the store, specs put back by the reader.
    const { events } = await tasks.listTaskEvents({ taskId: r.id });
    const listed = events.find(isCreated);
    differences.push(
      ...diff(TaskSpecSchema, listed?.task?.spec, sent, `ListTaskEvents → CREATED.task.spec.`),
    );
    // WatchTasks replaying history (from the store: one event is kept in memory).
    const replayed = await firstEvent(tasks, { afterRevision: before, taskId: r.id });
    t.true(isCreated(replayed), `the replay of ${r.id} starts with its CREATED event`);
    differences.push(
      ...diff(TaskSpecSchema, replayed?.task?.spec, sent, `WatchTasks replay → event.task.spec.`),
    );
    // WatchTasks live (from memory).
    const live = await eventually(() => need(liveEvents.find(isCreated), `live CREATED of ${i}`));
    differences.push(
      ...diff(TaskSpecSchema, live.task?.spec, sent, `WatchTasks live → event.task.spec.`),
    );
    // Down the worker stream: the RUN assignment carries the task as stored, spec and all.
    const assignment = await worker.waitFor(
      "assignment",
      (a) => a.task?.id === r.id && a.action === AssignmentAction.RUN,
    );
    differences.push(
      ...diff(TaskSpecSchema, assignment.task?.spec, full, `Assignment → task.spec.`),
    );
    const { task: stored } = await tasks.getTask({ id: r.id });
    differences.push(
      ...diff(TaskSchema, redactTask(assignment.task), stored, `Assignment → task.`),
    );
  }

  // Up: a TaskUpdate with every field set, for the current generation, state RUNNING.
  const first = need(request.requests[0], "requests[0]");
  const { task: scheduled } = await tasks.getTask({ id: first.id });
  const update = randomMessage(TaskUpdateSchema, random);
  update.seq = 1n; // the first update of this worker: seqs go up by one (a jump is refused)
  update.taskId = first.id;
  update.generation = need(scheduled, "task").generation;
  update.state = TaskState.RUNNING;
  t.deepEqual(missingFields(TaskUpdateSchema, update), []);
  worker.send({ case: "update", value: update });
  const running = await eventually(async () => {
    const { task } = await tasks.getTask({ id: first.id });
    if (task?.state !== TaskState.RUNNING) throw new Error(`task ${first.id} not RUNNING yet`);
    return task;
  }, 10_000);
  differences.push(
    ...carried(
      TaskUpdateSchema,
      update,
      TaskSchema,
      running,
      {
        renamed: { task_id: "id", time: "started_at" },
        notCarried: {
          seq: "the worker's outbox position: the manager answers it with an UpdateAck (below)",
          exit_code: "a running container has none: the report of its end carries it (below)",
        },
      },
      "TaskUpdate RUNNING → GetTask task.",
    ),
  );
  await worker.waitFor("updateAck", (ack) => ack.seq === update.seq);

  // Up: a HealthReport with every field set (HEALTHY: UNHEALTHY would restart the task).
  const health = randomMessage(HealthReportSchema, random);
  health.taskId = first.id;
  health.generation = update.generation;
  health.status = HealthStatus.HEALTHY;
  worker.send({ case: "health", value: health });
  const healthy = await eventually(async () => {
    const { task } = await tasks.getTask({ id: first.id });
    if (task?.health !== HealthStatus.HEALTHY) throw new Error(`task ${first.id} not HEALTHY yet`);
    return task;
  }, 10_000);
  differences.push(
    ...carried(
      HealthReportSchema,
      health,
      TaskSchema,
      healthy,
      {
        renamed: { task_id: "id", status: "health" },
        notCarried: {
          message: "it is the HEALTH_CHANGED event's message (checked below)",
          consecutive_failures:
            "it counts toward the worker's own threshold; the task keeps the verdict",
          time: "events are stamped by the manager's clock, as every event is",
        },
      },
      "HealthReport → GetTask task.",
    ),
  );
  const { events } = await tasks.listTaskEvents({ taskId: first.id });
  const changed = events.find((e) => e.type === TaskEventType.HEALTH_CHANGED);
  t.is(changed?.message, health.message, "the health report's message is the event's");

  // Up: Stats with every field set. The manager keeps a worker's word about itself and the
  // tasks it holds only, with numbers in their ranges (manager/rules/worker-stats.ts): the
  // samples are of tasks placed on this worker, one each, in this worker's name, and the
  // random numbers are brought into range (the clamping has its own tests).
  const stats = randomMessage(StatsSchema, random);
  const nodeSample = need(stats.node, "stats.node");
  nodeSample.cpuCount = random.int(1, 256);
  nodeSample.cpuPercent = random.int(1, 10_000) / 100;
  for (const load of ["load1", "load5", "load15"] as const) {
    nodeSample[load] = random.int(1, 100_000) / 100;
  }
  stats.tasks = stats.tasks.slice(0, request.requests.length);
  stats.tasks.forEach((sample, i) => {
    sample.taskId = need(request.requests[i], "request").id;
    sample.workerId = register.workerId;
    sample.cpuPercent = random.int(1, 10_000) / 100;
  });
  worker.send({ case: "stats", value: stats });
  const nodeCarriage: Carriage = {
    notCarried: {
      worker_id:
        "the manager names the worker whose stream it came up (checked below): a worker cannot speak for another",
    },
  };
  const got = await eventually(
    async () => need((await metrics.getNodeMetrics({ workerId: register.workerId })).metrics, ""),
    10_000,
  );
  t.is(got.workerId, register.workerId);
  differences.push(
    ...carried(
      NodeMetricsSchema,
      nodeSample,
      NodeMetricsSchema,
      got,
      nodeCarriage,
      "GetNodeMetrics → metrics.",
    ),
  );
  const listedNodes = await metrics.listNodeMetrics({});
  differences.push(
    ...carried(
      NodeMetricsSchema,
      nodeSample,
      NodeMetricsSchema,
      listedNodes.metrics.find((x) => x.workerId === register.workerId),
      nodeCarriage,
      "ListNodeMetrics → metrics[].",
    ),
  );
  differences.push(
    ...diff(
      ListTaskMetricsResponseSchema,
      await metrics.listTaskMetrics({ workerId: register.workerId }),
      create(ListTaskMetricsResponseSchema, { metrics: stats.tasks }),
      "ListTaskMetrics → ",
    ),
  );

  // The Register, as every worker call shows the worker (and its latest node sample).
  const registerCarriage: Carriage = {
    renamed: { worker_id: "id" },
    notCarried: {
      accepts_batch: "how the stream to the worker is framed, not a property of the worker",
      call_secret: "what the manager presents to the worker's own port: no API shows it",
    },
  };
  const watchWorkers = new AbortController();
  let watched: Worker | undefined;
  for await (const r of workers.watchWorkers({}, { signal: watchWorkers.signal })) {
    if (r.worker?.id === register.workerId) {
      watched = r.worker;
      break;
    }
  }
  watchWorkers.abort();
  const shown: [string, Worker | undefined][] = [
    ["GetWorker", (await workers.getWorker({ id: register.workerId })).worker],
    [
      "ListWorkers",
      (await workers.listWorkers({})).workers.find((w) => w.id === register.workerId),
    ],
    ["WatchWorkers", watched],
  ];
  for (const [how, w] of shown) {
    const json = JSON.stringify(w ?? {}, (_k, v) => (typeof v === "bigint" ? String(v) : v));
    t.false(json.includes(register.callSecret), `${how} shows the call secret`);
    differences.push(
      ...carried(RegisterSchema, register, WorkerSchema, w, registerCarriage, `${how} → worker.`),
    );
  }
  const [, getWorker] = shown[0] as [string, Worker | undefined];
  differences.push(
    ...carried(
      NodeMetricsSchema,
      nodeSample,
      NodeMetricsSchema,
      getWorker?.metrics,
      nodeCarriage,
      "GetWorker → worker.metrics.",
    ),
  );

  // Up: the end of the task's container, with every field set. A stop was asked for first,
  // so the report completes the task "stopped", with no restart policy in the way.
  await tasks.stopTask({ id: first.id });
  const end = randomMessage(TaskUpdateSchema, random);
  end.seq = update.seq + 1n;
  end.taskId = first.id;
  end.generation = update.generation;
  end.state = TaskState.COMPLETED;
  worker.send({ case: "update", value: end });
  const completed = await eventually(async () => {
    const { task } = await tasks.getTask({ id: first.id });
    if (task?.state !== TaskState.COMPLETED) throw new Error(`task ${first.id} not COMPLETED yet`);
    return task;
  }, 10_000);
  t.is(completed.reason, "stopped");
  differences.push(
    ...carried(
      TaskUpdateSchema,
      end,
      TaskSchema,
      completed,
      {
        renamed: { task_id: "id", time: "finished_at" },
        notCarried: {
          seq: "the worker's outbox position: the manager answers it with an UpdateAck (below)",
          reason: 'a stop that was asked for ends "stopped", whatever the container said',
        },
      },
      "TaskUpdate COMPLETED → GetTask task.",
    ),
  );
  await worker.waitFor("updateAck", (ack) => ack.seq === end.seq);

  t.deepEqual(differences, []);
});

test("the manager check fails when a path drops a field (a client that loses one)", async (t) => {
  const address = await manager(t);
  const dropped = "spec.health_check.failure_threshold";
  const losing: Record<string, string> = {
    RunTasks: `tasks[0].${dropped}`,
    GetTask: `task.${dropped}`,
  };
  const lossy: Interceptor = (next) => async (req) => {
    const res = await next(req);
    const path = losing[res.method.name];
    if (res.stream || !path) return res;
    return { ...res, message: withoutField(res.method.output, res.message, path) };
  };
  const client = createClient(
    TaskService,
    createGrpcTransport({ baseUrl: `http://${address}`, interceptors: [lossy] }),
  );
  const request = runTasksRequest(seededRandom(SEED + 4));
  request.requests.splice(1); // one request: the interceptor damages tasks[0]
  const { differences } = await runAndGet(client, request, "lossy");
  t.deepEqual(differences.map(pathOf), [
    `lossy RunTasks → tasks[0].${dropped}`,
    `lossy GetTask → task.${dropped}`,
  ]);
});
