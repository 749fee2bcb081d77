/**
 * Secret env values (issue 15, point 5): they reach the container of the worker that runs
 * the task and nothing else: read APIs, events, the worker's own port and the manager's logs
 * show "<redacted>", and the manager's store holds them only sealed.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test from "ava";
import { pino } from "pino";
import { TaskEventSchema, TaskSchema, TaskSpecSchema, TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { Role, TokenService } from "../gen/cube/v1/token_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { REDACTED, redactEvent, redactTask, scrubSecrets } from "../lib/redact.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { SecretBox } from "../lib/secret-box.js";
import { openControlPlane } from "../manager/index.js";
import { knownTask } from "../manager/rules/task-ops.js";
import { MemoryStore } from "../manager/store/memory-store.js";
import {
  CALL_SECRET_PURPOSE,
  WORKER_SECRET_KEY_FILE,
  WorkerStore,
} from "../worker/store/worker-store.js";
import { Outbox } from "../worker/stream/outbox.js";
import { TaskLedger } from "../worker/tasks/task-ledger.js";
import { specProblem } from "../worker/tasks/task-record.js";
import { docker, HTTP_IMAGE, requireDocker, startTestManager, tempDir } from "./fixtures.js";
import { eventually } from "./manager-harness.js";
import { Cluster } from "./manager-process.js";

const SECRET = "s3cr3t-Pa55word-never-shown";

test("a secret env value reaches the container and nothing else", async (t) => {
  await requireDocker();
  const dir = await tempDir(t);
  const cluster = new Cluster(t, dir, { CUBE_LOG_LEVEL: "debug" });
  const manager = await cluster.startManager();
  const worker = await cluster.startWorker("ws", { CUBE_LOG_LEVEL: "debug" });
  const tasks = createClient(TaskService, grpcTransport(manager.address, { token: manager.token }));
  const { task: answered } = await tasks.runTask({
    id: "with-secret",
    spec: {
      name: "db-client",
      image: HTTP_IMAGE,
      env: { PLAIN: "visible" },
      secretEnv: { DB_PASSWORD: SECRET },
    },
  });
  t.deepEqual(answered?.spec?.secretEnv, { DB_PASSWORD: REDACTED });
  t.deepEqual(answered?.spec?.env, { PLAIN: "visible" });
  const running = await eventually(async () => {
    const { task } = await tasks.getTask({ id: "with-secret" });
    if (task?.state !== TaskState.RUNNING) throw new Error(`still ${task?.state}`);
    return task;
  }, 30_000);
  t.deepEqual(running.spec?.secretEnv, { DB_PASSWORD: REDACTED });
  // The container has it.
  const inspect = await docker.getContainer(running.containerId).inspect();
  t.true(inspect.Config.Env.includes(`DB_PASSWORD=${SECRET}`));
  t.true(inspect.Config.Env.includes("PLAIN=visible"));
  // Read APIs do not.
  const seen: string[] = [];
  seen.push(JSON.stringify((await tasks.listTasks({})).tasks.map((x) => x.spec?.secretEnv)));
  const { events } = await tasks.listTaskEvents({ taskId: "with-secret" });
  seen.push(JSON.stringify(events.map((e) => e.task?.spec?.secretEnv)));
  const watch = tasks.watchTasks({ afterRevision: 1n, taskId: "with-secret" });
  for await (const { event } of watch) {
    seen.push(JSON.stringify(event?.task?.spec?.secretEnv));
    if (event?.task?.state === TaskState.RUNNING) break;
  }
  // Nor does the worker's own port: it answers its manager alone (by the secret derived from
  // its key, which a test can derive too), and shows even its manager the placeholder.
  const refused = await createClient(TaskService, grpcTransport(worker.address))
    .listTasks({})
    .catch((e: unknown) => ConnectError.from(e));
  t.is((refused as ConnectError).code, Code.Unauthenticated);
  const callSecret = (await SecretBox.open(join(dir, "ws", WORKER_SECRET_KEY_FILE))).derive(
    CALL_SECRET_PURPOSE,
  );
  const own = createClient(TaskService, grpcTransport(worker.address, { token: callSecret }));
  seen.push(JSON.stringify((await own.getTask({ id: "with-secret" })).task?.spec?.secretEnv));
  seen.push(JSON.stringify((await own.listTasks({})).tasks.map((x) => x.spec?.secretEnv)));
  for (const s of seen) {
    t.false(s.includes(SECRET), s);
    t.true(s.includes(REDACTED), s);
  }
  // Nor the logs, at debug level, of either process.
  t.false(cluster.logs().includes(SECRET), "no secret in the logs");
  // The manager's store holds it sealed only.
  await manager.kill9();
  for (const name of await readdir(join(dir, "manager"))) {
    const bytes = await readFile(join(dir, "manager", name));
    t.false(bytes.includes(SECRET), `secret in plain text in ${name}`);
  }
  // And after a restart the manager still has it (it reopens the seal), and still hides it.
  const again = await cluster.startManager();
  const client = createClient(TaskService, grpcTransport(again.address, { token: again.token }));
  t.deepEqual((await client.getTask({ id: "with-secret" })).task?.spec?.secretEnv, {
    DB_PASSWORD: REDACTED,
  });
  // An idempotent retry with the same secret is the same task; another value is another spec.
  const retry = await client.runTask({
    id: "with-secret",
    spec: {
      name: "db-client",
      image: HTTP_IMAGE,
      env: { PLAIN: "visible" },
      secretEnv: { DB_PASSWORD: SECRET },
    },
  });
  t.is(retry.task?.id, "with-secret");
  const other = await client
    .runTask({
      id: "with-secret",
      spec: {
        name: "db-client",
        image: HTTP_IMAGE,
        env: { PLAIN: "visible" },
        secretEnv: { DB_PASSWORD: "x" },
      },
    })
    .catch((e) => ConnectError.from(e));
  t.is((other as ConnectError).code, Code.AlreadyExists);
});

test("a name in both env and secret_env is INVALID_ARGUMENT", async (t) => {
  const dir = await tempDir(t);
  const cluster = new Cluster(t, dir);
  const manager = await cluster.startManager();
  const tasks = createClient(TaskService, grpcTransport(manager.address, { token: manager.token }));
  const error = await tasks
    .runTask({ spec: { image: HTTP_IMAGE, env: { A: "1" }, secretEnv: { A: "2" } } })
    .catch((e) => ConnectError.from(e));
  t.is((error as ConnectError).code, Code.InvalidArgument);
  t.is(
    (error as ConnectError).rawMessage,
    'spec.secret_env["A"]: is also in spec.env: give it once',
  );
});

test("SecretBox: a sealed value opens with its key only, and an altered one not at all", async (t) => {
  const dir = await tempDir(t);
  const box = await SecretBox.open(join(dir, "k"));
  const again = await SecretBox.open(join(dir, "k"));
  const sealed = box.seal(SECRET);
  t.false(sealed.includes(SECRET));
  t.not(box.seal(SECRET), sealed, "a fresh nonce each time");
  t.is(again.open(sealed), SECRET, "the key file is reused, not remade");
  const other = await SecretBox.open(join(dir, "other"));
  t.throws(() => other.open(sealed));
  const flipped = `${sealed.slice(0, -2)}${sealed.at(-2) === "A" ? "B" : "A"}${sealed.at(-1)}`;
  t.throws(() => box.open(flipped));
});

test("a NUL byte in env, secret_env, command or args is INVALID_ARGUMENT naming the field; a secret is never quoted", async (t) => {
  const dir = await tempDir(t);
  const cluster = new Cluster(t, dir);
  const manager = await cluster.startManager();
  const tasks = createClient(TaskService, grpcTransport(manager.address, { token: manager.token }));
  const cases: [string, Record<string, unknown>, string][] = [
    ["env", { env: { A: "x\0y" } }, 'spec.env["A"]'],
    ["secret_env", { secretEnv: { S: `${SECRET}\0tail` } }, 'spec.secret_env["S"]'],
    ["command", { command: ["sh\0"] }, "spec.command[0]"],
    ["args", { args: ["ok", "a\0b"] }, "spec.args[1]"],
  ];
  for (const [name, spec, field] of cases) {
    const error = await tasks
      .runTask({ spec: { image: HTTP_IMAGE, ...spec } })
      .catch((e) => ConnectError.from(e));
    t.true(error instanceof ConnectError, `${name}: accepted`);
    t.is((error as ConnectError).code, Code.InvalidArgument, name);
    t.is(
      (error as ConnectError).rawMessage,
      `${field}: must not contain a NUL byte (a process's arguments and environment cannot hold one)`,
      name,
    );
  }
  t.is((await tasks.listTasks({})).tasks.length, 0, "nothing stored");
  t.false(cluster.logs().includes(SECRET), "no secret in the logs");
});

test("a reason or message that quotes a secret value shows it redacted: in the worker's report and in every read API", async (t) => {
  const spec = create(TaskSpecSchema, {
    image: HTTP_IMAGE,
    secretEnv: { LONG: SECRET, TINY: "1" },
  });
  const quoted = `engine said: "LONG=${SECRET}" and ${JSON.stringify(`${SECRET}\n`)}: exit code 1`;
  t.is(
    scrubSecrets(quoted, spec),
    `engine said: "LONG=${REDACTED}" and "${REDACTED}\\n": exit code 1`,
    "as given and JSON-escaped; a value under 4 characters is left alone",
  );
  t.is(scrubSecrets(quoted, create(TaskSpecSchema, { image: HTTP_IMAGE })), quoted);
  const task = create(TaskSchema, { id: "t", spec, reason: quoted, state: TaskState.FAILED });
  const shown = redactTask(task);
  t.false(JSON.stringify(shown.reason).includes(SECRET));
  t.is(shown.spec?.secretEnv.LONG, REDACTED);
  t.is(task.reason, quoted, "the stored snapshot is not changed");
  const event = redactEvent(create(TaskEventSchema, { task, message: quoted }));
  t.false(event.message.includes(SECRET));
  t.false((event.task?.reason ?? "").includes(SECRET));

  // A worker refuses a NUL itself (an older manager let it through), naming the key only.
  t.is(
    specProblem(create(TaskSpecSchema, { image: HTTP_IMAGE, secretEnv: { S: `${SECRET}\0` } })),
    "invalid spec: secret_env S holds a NUL byte",
  );

  // The worker's ledger scrubs what it stores, sends and logs.
  const store = await WorkerStore.open(await tempDir(t));
  t.teardown(() => store.close());
  const outbox = await Outbox.open(store);
  const lines: string[] = [];
  const ledger = new TaskLedger(
    store,
    outbox,
    pino({ level: "info" }, { write: (line: string) => void lines.push(line) }),
  );
  await ledger.fail(create(TaskSchema, { id: "t", generation: 1n, spec }), quoted);
  const sent = outbox.pending().at(-1);
  t.is(sent?.reason, `engine said: "LONG=${REDACTED}" and "${REDACTED}\\n": exit code 1`);
  t.false((ledger.get("t")?.reason ?? "").includes(SECRET));
  t.true(lines.length > 0);
  t.false(lines.join("").includes(SECRET), lines.join(""));
});

test("a RunTask retry is recognised only from the token that created the task when secret values are involved: no one else can confirm a guess", async (t) => {
  const dataDir = await tempDir(t);
  const m = await startTestManager(t, { dataDir });
  const admin = createClient(TokenService, grpcTransport(m.address, { token: m.adminToken }));
  const secrets = new Map<string, string>();
  const operator = async (name: string) => {
    const { secret } = await admin.createToken({ name, role: Role.OPERATOR });
    secrets.set(name, secret);
    return createClient(TaskService, grpcTransport(m.address, { token: secret }));
  };
  const [alice, mallory] = [await operator("alice"), await operator("mallory")];
  const spec = (secretEnv: Record<string, string>) => ({ image: HTTP_IMAGE, secretEnv });
  const refusal = (p: Promise<unknown>) =>
    p.then(
      () => "answered the task",
      (e: unknown) => `${Code[ConnectError.from(e).code]}: ${ConnectError.from(e).rawMessage}`,
    );
  await alice.runTask({ id: "db", spec: spec({ PW: SECRET }) });

  // Its creator: a retry is a retry; another value is another spec.
  t.is((await alice.runTask({ id: "db", spec: spec({ PW: SECRET }) })).task?.id, "db");
  t.is(
    await refusal(alice.runTask({ id: "db", spec: spec({ PW: "guess" }) })),
    'AlreadyExists: task "db" already exists with another spec',
  );
  // Anyone else: the same answer for the right value, a wrong one, or none.
  const OTHER =
    'AlreadyExists: task "db" already exists; a retry carrying secret values is recognised only from the token that created it';
  t.is(await refusal(mallory.runTask({ id: "db", spec: spec({ PW: SECRET }) })), OTHER);
  t.is(await refusal(mallory.runTask({ id: "db", spec: spec({ PW: "guess" }) })), OTHER);
  t.is(await refusal(mallory.runTask({ id: "db", spec: { image: HTTP_IMAGE } })), OTHER);
  for (const value of [SECRET, "guess"]) {
    t.is(
      await refusal(mallory.runTasks({ requests: [{ id: "db", spec: spec({ PW: value }) }] })),
      OTHER.replace(": task", ": requests[0]: task"),
    );
  }
  // A task without secret values stays an idempotency key for everyone.
  await alice.runTask({ id: "plain", spec: { image: HTTP_IMAGE } });
  t.is((await mallory.runTask({ id: "plain", spec: { image: HTTP_IMAGE } })).task?.id, "plain");
  // Its own fresh id takes a spec with secrets from anyone.
  t.is((await mallory.runTask({ id: "db2", spec: spec({ PW: "x1234" }) })).task?.id, "db2");

  // The creator is stored with the task: after a restart the same holds.
  await m.close();
  const again = await startTestManager(t, { dataDir });
  const client = (token: string) =>
    createClient(TaskService, grpcTransport(again.address, { token }));
  const tokens = createClient(TokenService, grpcTransport(again.address, { token: m.adminToken }));
  t.is((await tokens.listTokens({})).tokens.length, 4, "alice and mallory are still there");
  const aliceAgain = client(secrets.get("alice") as string);
  t.is((await aliceAgain.runTask({ id: "db", spec: spec({ PW: SECRET }) })).task?.id, "db");
  const malloryAgain = client(secrets.get("mallory") as string);
  t.is(await refusal(malloryAgain.runTask({ id: "db", spec: spec({ PW: SECRET }) })), OTHER);
  const adminTasks = client(m.adminToken as string);
  t.is(
    await refusal(adminTasks.runTask({ id: "db", spec: spec({ PW: SECRET }) })),
    OTHER,
    "even an admin token is not alice's",
  );
  t.is((await adminTasks.getTask({ id: "db" })).task?.spec?.secretEnv.PW, REDACTED);
});

test("a task with no recorded creator (stored before creators were, or a job's replica) takes a retry with secrets from no one", async (t) => {
  const cp = await openControlPlane(new MemoryStore(), { logger: createLogger("m", "silent") });
  t.teardown(() => cp.close());
  const spec = create(TaskSpecSchema, { image: HTTP_IMAGE, secretEnv: { PW: SECRET } });
  cp.createTask("old", spec);
  for (const caller of ["", "tok1"]) {
    const error = t.throws(() => knownTask(cp, "old", spec, caller));
    t.is(ConnectError.from(error).code, Code.AlreadyExists);
    t.is(
      ConnectError.from(error).rawMessage,
      'task "old" already exists; a retry carrying secret values is recognised only from the token that created it',
    );
  }
  // Without secret values the spec decides, as before.
  const plain = create(TaskSpecSchema, { image: HTTP_IMAGE });
  cp.createTask("older", plain);
  t.is(knownTask(cp, "older", plain, "tok1")?.task.id, "older");
  // On a manager without tokens every caller is "": its own tasks' retries work.
  cp.createTask("mine", spec, "");
  t.is(knownTask(cp, "mine", spec, "")?.task.id, "mine");
});
