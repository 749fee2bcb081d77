/**
 * Identity of clients (issue 15, points 2 and 3) on a real manager over real sockets: every
 * RPC has an authorization decision from one table; tokens with roles, expiry and
 * revocation, stored hashed; plaintext refused off loopback unless --insecure.
 */
import { readdir, readFile, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test from "ava";
import { createHollowDriver } from "../bench/hollow-driver.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { Role, TokenService } from "../gen/cube/v1/token_service_pb.js";
import { WorkerService } from "../gen/cube/v1/worker_service_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ReflectionV1 } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { createLogger } from "../lib/logger.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { authorize, POLICY } from "../manager/api/authorization.js";
import { MANAGER_FILES } from "../manager/api/routes.js";
import { TokenTable } from "../manager/core/token-table.js";
import { openControlPlane, startManager } from "../manager/index.js";
import { MemoryStore } from "../manager/store/memory-store.js";
import { startWorker } from "../worker/index.js";
import { cube, cubeEnv } from "./cli-harness.js";
import { FakeClock } from "./fake-clock.js";
import { serveAuthorized, TEST_SANDBOXES, tempDir, warnings } from "./fixtures.js";
import { opensAgain } from "./manager-harness.js";

async function codeOf(p: Promise<unknown>): Promise<Code> {
  try {
    await p;
  } catch (error) {
    return ConnectError.from(error).code;
  }
  throw new Error("expected the call to fail");
}

async function manager(t: Parameters<typeof tempDir>[0], dataDir?: string, clock?: FakeClock) {
  const m = await startManager({
    listen: "127.0.0.1:0",
    dataDir: dataDir ?? (await tempDir(t)),
    logger: createLogger("manager", "silent"),
    clock,
  });
  t.teardown(() => m.close());
  return m;
}

function clients(address: string, token?: string) {
  const transport = grpcTransport(address, { token });
  return {
    tasks: createClient(TaskService, transport),
    workers: createClient(WorkerService, transport),
    tokens: createClient(TokenService, transport),
    health: createClient(Health, transport),
  };
}

test("every method the manager serves has an entry in the one authorization table", (t) => {
  const served = [
    ...MANAGER_FILES.flatMap((f) => f.services),
    Health,
    ReflectionV1,
    ReflectionV1alpha,
  ].flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`));
  t.deepEqual(
    served.filter((p) => !POLICY.has(p)),
    [],
  );
  t.deepEqual(
    [...POLICY.keys()].filter((p) => !served.includes(p)),
    [],
    "no stale entries",
  );
});

test("worker-only methods are decided in the table: a join token joins, a worker's own credential streams, an admin token does neither", (t) => {
  const table = new TokenTable();
  const now = Date.now();
  const secret = (role: Role, workerId = "") =>
    table.create(Role[role] as string, role, undefined, now, workerId).secret;
  const tokens = {
    admin: secret(Role.ADMIN),
    operator: secret(Role.OPERATOR),
    join: secret(Role.WORKER),
    credential: secret(Role.WORKER, "w1"),
  };
  const JOIN = "/cube.v1.TokenService/JoinWorker";
  const CONNECT = "/cube.v1.WorkerService/Connect";
  const RENEW = "/cube.v1.TokenService/RenewWorkerCertificate";
  const LIST = "/cube.v1.TaskService/ListTasks";
  const cases: [string, keyof typeof tokens, "ok" | Code][] = [
    [JOIN, "join", "ok"],
    [JOIN, "credential", Code.PermissionDenied],
    [JOIN, "admin", Code.PermissionDenied],
    [JOIN, "operator", Code.PermissionDenied],
    [CONNECT, "credential", "ok"],
    [CONNECT, "join", Code.PermissionDenied],
    [CONNECT, "admin", Code.PermissionDenied],
    [RENEW, "credential", "ok"],
    [RENEW, "join", Code.PermissionDenied],
    [RENEW, "admin", Code.PermissionDenied],
    [LIST, "admin", "ok"],
    [LIST, "join", Code.PermissionDenied],
    [LIST, "credential", Code.PermissionDenied],
  ];
  for (const [procedure, who, want] of cases) {
    let got: "ok" | Code = "ok";
    try {
      authorize(table, procedure, `Bearer ${tokens[who]}`, now);
    } catch (error) {
      got = ConnectError.from(error).code;
    }
    t.is(got, want, `${who} → ${procedure}`);
  }
});

test("no token → UNAUTHENTICATED; health and reflection answer anyone", async (t) => {
  const m = await manager(t);
  const anon = clients(m.address);
  t.is(await codeOf(anon.tasks.runTask({ spec: { image: "x" } })), Code.Unauthenticated);
  t.is(await codeOf(anon.tasks.stopTask({ id: "x" })), Code.Unauthenticated);
  t.is(await codeOf(anon.tasks.listTasks({})), Code.Unauthenticated);
  t.is(await codeOf(anon.tokens.listTokens({})), Code.Unauthenticated);
  t.is((await anon.health.check({ service: "" })).status, 1);
  const bogus = clients(
    m.address,
    "cube_0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
  );
  t.is(await codeOf(bogus.tasks.listTasks({})), Code.Unauthenticated);
  const malformed = clients(m.address, "hunter2");
  t.is(await codeOf(malformed.tasks.listTasks({})), Code.Unauthenticated);
});

test("roles: read lists but may not run; operator runs but may not manage tokens; worker only joins", async (t) => {
  const m = await manager(t);
  const admin = clients(m.address, m.adminToken);
  const make = async (role: Role) =>
    (await admin.tokens.createToken({ name: Role[role] as string, role })).secret;
  const read = clients(m.address, await make(Role.READ));
  const operator = clients(m.address, await make(Role.OPERATOR));
  const worker = clients(m.address, m.workerToken);

  t.deepEqual((await read.tasks.listTasks({})).tasks, []);
  t.is(await codeOf(read.tasks.runTask({ spec: { image: "x" } })), Code.PermissionDenied);
  t.is(await codeOf(read.tasks.stopTask({ id: "x" })), Code.PermissionDenied);
  const { task } = await operator.tasks.runTask({ spec: { image: "cube/httpd:local" } });
  t.truthy(task?.id);
  t.is(
    await codeOf(operator.tokens.createToken({ name: "x", role: Role.ADMIN })),
    Code.PermissionDenied,
  );
  t.is(await codeOf(operator.tokens.listTokens({})), Code.PermissionDenied);
  t.is(await codeOf(worker.tasks.listTasks({})), Code.PermissionDenied);
  t.is(await codeOf(worker.workers.listWorkers({})), Code.PermissionDenied);
  // A read token may not pose as a worker on the stream.
  const stream = read.workers.connect(
    (async function* () {
      yield { message: { case: "register" as const, value: { workerId: "rogue" } } };
    })(),
  );
  t.is(
    await codeOf(
      (async () => {
        for await (const _ of stream) return;
      })(),
    ),
    Code.PermissionDenied,
  );
  t.deepEqual((await admin.workers.listWorkers({})).workers, [], "no rogue worker registered");
});

test("revoked and expired tokens are refused; secrets are never shown again or stored", async (t) => {
  const dataDir = await tempDir(t);
  const clock = new FakeClock(Date.now());
  const m = await manager(t, dataDir, clock);
  const admin = clients(m.address, m.adminToken);
  const shortLived = await admin.tokens.createToken({
    name: "ci",
    role: Role.READ,
    ttl: durationFromMs(60_000),
  });
  const revokedOne = await admin.tokens.createToken({ name: "old laptop", role: Role.OPERATOR });
  const ci = clients(m.address, shortLived.secret);
  const laptop = clients(m.address, revokedOne.secret);
  t.deepEqual((await ci.tasks.listTasks({})).tasks, []);
  t.deepEqual((await laptop.tasks.listTasks({})).tasks, []);
  await admin.tokens.revokeToken({ id: revokedOne.token?.id ?? "" });
  t.is(await codeOf(laptop.tasks.listTasks({})), Code.Unauthenticated);
  clock.advance(60_001);
  t.is(await codeOf(ci.tasks.listTasks({})), Code.Unauthenticated);
  t.is(await codeOf(admin.tokens.revokeToken({ id: "nope" })), Code.NotFound);
  t.is(
    await codeOf(admin.tokens.createToken({ name: "x", role: Role.UNSPECIFIED })),
    Code.InvalidArgument,
  );

  const { tokens } = await admin.tokens.listTokens({});
  t.deepEqual(
    tokens.map((x) => [x.name, Role[x.role], x.revoked]),
    [
      ["first admin token", "ADMIN", false],
      ["first worker join token", "WORKER", false],
      ["ci", "READ", false],
      ["old laptop", "OPERATOR", true],
    ],
  );
  const listed = JSON.stringify(tokens, (_k, v) => (typeof v === "bigint" ? String(v) : v));
  for (const s of [shortLived.secret, revokedOne.secret, m.adminToken as string]) {
    t.false(listed.includes(s.split(".")[1] as string), "no secret in ListTokens");
  }
  await m.close();
  // On disk: hashes only (the first two tokens' files are the one place they are in clear).
  for (const name of await readdir(dataDir)) {
    if (name.endsWith(".token")) continue;
    const bytes = await readFile(join(dataDir, name));
    for (const s of [shortLived.secret, revokedOne.secret, m.adminToken as string]) {
      t.false(bytes.includes(s), `secret in ${name}`);
    }
  }
  // After a restart the tokens, and their revocation, are still in force.
  const again = await manager(t, dataDir);
  t.deepEqual((await clients(again.address, m.adminToken).tasks.listTasks({})).tasks, []);
  t.is(
    await codeOf(clients(again.address, revokedOne.secret).tasks.listTasks({})),
    Code.Unauthenticated,
  );
  t.is(again.adminToken, m.adminToken, "the first tokens are made once, not at every start");
});

test("the last admin token that works cannot be revoked; a manager started with none working writes a new one", async (t) => {
  const dataDir = await tempDir(t);
  const clock = new FakeClock(Date.now());
  const m = await manager(t, dataDir, clock);
  const first = clients(m.address, m.adminToken);
  const firstId = (m.adminToken as string).slice("cube_".length, "cube_".length + 16);
  const refused = await first.tokens
    .revokeToken({ id: firstId })
    .catch((e: unknown) => ConnectError.from(e));
  t.true(refused instanceof ConnectError, "the last admin token was revoked");
  t.is((refused as ConnectError).code, Code.FailedPrecondition);
  t.regex(
    (refused as ConnectError).rawMessage,
    /last admin token that works.*cube token create --role admin/,
  );
  t.deepEqual((await first.tasks.listTasks({})).tasks, [], "it still works");
  // With a second admin token (for an hour), the first may go; then the second is the last.
  const second = await first.tokens.createToken({
    name: "for an hour",
    role: Role.ADMIN,
    ttl: durationFromMs(3_600_000),
  });
  const secondId = second.token?.id as string;
  await first.tokens.revokeToken({ id: firstId });
  const admin = clients(m.address, second.secret);
  t.is(await codeOf(admin.tokens.revokeToken({ id: secondId })), Code.FailedPrecondition);
  const again1 = await admin.tokens.revokeToken({ id: firstId });
  t.true(again1.token?.revoked, "a revoked one may be revoked again");
  // It expires: nobody can manage tokens until the manager starts again on its data.
  clock.advance(3_600_001);
  t.is(await codeOf(admin.tasks.listTasks({})), Code.Unauthenticated);
  await m.close();
  const again = await manager(t, dataDir, clock);
  t.truthy(again.adminToken);
  t.not(again.adminToken, m.adminToken, "a new admin token, written to admin.token");
  t.is((await readFile(join(dataDir, "admin.token"), "utf8")).trim(), again.adminToken as string);
  const back = clients(again.address, again.adminToken);
  const { tokens } = await back.tokens.listTokens({});
  t.deepEqual(
    tokens
      .filter((x) => x.role === Role.ADMIN)
      .map((x) => [x.name, x.revoked])
      .sort(),
    [
      ["admin token (none worked)", false],
      ["first admin token", true],
      ["for an hour", false],
    ],
  );
  // A start with a working admin token makes none.
  await again.close();
  const third = await manager(t, dataDir, clock);
  t.is(third.adminToken, again.adminToken);
});

test("a request with two Authorization headers is UNAUTHENTICATED, whichever comes first", async (t) => {
  const m = await manager(t);
  const admin = m.adminToken as string;
  const read = await clients(m.address, admin).tokens.createToken({ name: "r", role: Role.READ });
  const [host, port] = m.address.split(":") as [string, string];
  /** A Connect unary call over HTTP/1.1 with these Authorization headers, raw. */
  const call = (auths: string[]) =>
    new Promise<string>((resolve, reject) => {
      const body = "{}";
      const socket = connect(Number(port), host, () => {
        socket.write(
          [
            "POST /cube.v1.TaskService/ListTasks HTTP/1.1",
            `Host: ${m.address}`,
            "Content-Type: application/json",
            ...auths.map((a) => `Authorization: Bearer ${a}`),
            `Content-Length: ${body.length}`,
            "Connection: close",
            "",
            body,
          ].join("\r\n"),
        );
      });
      let data = "";
      socket.on("data", (d) => {
        data += d.toString();
      });
      socket.on("end", () => resolve(data));
      socket.on("error", reject);
    });
  t.regex(await call([admin]), /^HTTP\/1\.1 200/);
  for (const pair of [
    [read.secret, admin],
    [admin, read.secret],
    [admin, admin],
  ]) {
    const answer = await call(pair);
    t.regex(answer, /^HTTP\/1\.1 401/);
    t.regex(answer, /"code":"unauthenticated"/);
    t.regex(answer, /authorization: sent 2 times; send one/);
  }
});

test("plaintext on a non-loopback address is refused without --insecure, and warned about with it", async (t) => {
  const dir = await tempDir(t);
  const refused = await t.throwsAsync(
    startManager({ listen: "0.0.0.0:0", dataDir: dir, logger: createLogger("m", "silent") }),
  );
  t.regex(refused?.message ?? "", /refusing to serve plaintext on 0\.0\.0\.0:0.*--insecure/);
  const { lines, logger } = await warnings();
  const m = await startManager({ listen: "0.0.0.0:0", dataDir: dir, insecure: true, logger });
  t.teardown(() => m.close());
  t.true(
    lines.some((l) => l.includes("INSECURE")),
    lines.join("\n"),
  );
  const loopback = m.address.replace(/^0\.0\.0\.0/, "127.0.0.1");
  t.deepEqual((await clients(loopback, m.adminToken).tasks.listTasks({})).tasks, []);
});

test("a worker without TLS refuses a non-loopback port unless --insecure, and warns with it", async (t) => {
  const m = await manager(t);
  const dir = await tempDir(t);
  const common = {
    manager: m.address,
    token: m.workerToken,
    listen: "0.0.0.0:0",
    driver: createHollowDriver(),
  };
  const refused = await t.throwsAsync(
    startWorker({
      ...TEST_SANDBOXES,
      ...common,
      dataDir: join(dir, "a"),
      logger: createLogger("w", "silent"),
    }),
  );
  t.regex(refused?.message ?? "", /refusing to serve plaintext on 0\.0\.0\.0:0.*--insecure/);
  const { lines, logger } = await warnings();
  const w = await startWorker({
    ...TEST_SANDBOXES,
    ...common,
    dataDir: join(dir, "b"),
    insecure: true,
    logger,
  });
  t.teardown(() => w.close());
  t.true(
    lines.some((l) => l.includes("INSECURE")),
    lines.join("\n"),
  );
  // On loopback no flag is needed.
  const local = await startWorker({
    ...TEST_SANDBOXES,
    ...common,
    listen: "127.0.0.1:0",
    dataDir: join(dir, "c"),
    logger: createLogger("w", "silent"),
  });
  t.teardown(() => local.close());
  t.regex(local.address, /^127\.0\.0\.1:\d+$/);
});

test("cube token create | ls | revoke, and a client that finds its token in the config file", async (t) => {
  const m = await manager(t);
  const env = cubeEnv({ CUBE_MANAGER: m.address, CUBE_TOKEN: m.adminToken as string });
  const created = await cube(["token", "create", "--role", "read", "--name", "grafana"], { env });
  t.is(created.code, 0, created.stderr);
  const secret = created.stdout.trim();
  t.regex(secret, /^cube_[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$/);
  const ls = await cube(["token", "ls"], { env });
  t.regex(ls.stdout, /grafana\s+read\s+\S+\s+never\s+active/);
  t.false(ls.stdout.includes(secret.split(".")[1] as string));
  // With the read token: ps works, run is denied (exit 7).
  const readEnv = cubeEnv({ CUBE_MANAGER: m.address, CUBE_TOKEN: secret });
  t.is((await cube(["ps"], { env: readEnv })).code, 0);
  const denied = await cube(["run", "cube/httpd:local"], { env: readEnv });
  t.is(denied.code, 7, denied.stderr);
  t.regex(denied.stderr, /may not call \/cube\.v1\.TaskService\/RunTask/);
  const id = /^(\S+)\s+grafana/m.exec(ls.stdout)?.[1] as string;
  t.is((await cube(["token", "revoke", id], { env })).code, 0);
  const revoked = await cube(["ps"], { env: readEnv });
  t.is(revoked.code, 7);
  t.regex(revoked.stderr, /revoked/);
  // Neither flag nor variable: the config file (as `cube dev` writes it) gives both.
  const dir = await tempDir(t);
  const configFile = join(dir, "config.json");
  await writeFile(configFile, JSON.stringify({ manager: m.address, token: m.adminToken }));
  const fromFile = await cube(["token", "ls"], { env: cubeEnv({ CUBE_CONFIG: configFile }) });
  t.is(fromFile.code, 0, fromFile.stderr);
  t.regex(fromFile.stdout, /first admin token/);
  // No token at all: the message says how to give one.
  const none = await cube(["ps"], {
    env: cubeEnv({ CUBE_MANAGER: m.address, CUBE_CONFIG: "/nonexistent/cube.json" }),
  });
  t.is(none.code, 7);
  t.regex(none.stderr, /--token or CUBE_TOKEN/);
});

test("a token holding its most open streams gets RESOURCE_EXHAUSTED for another; closing one frees its place; other tokens are not counted", async (t) => {
  const cp = await openControlPlane(new MemoryStore(), { logger: createLogger("m", "silent") });
  t.teardown(() => cp.close());
  const now = Date.now();
  const watcher = cp.tokens.create("watcher", Role.OPERATOR, undefined, now).secret;
  const other = cp.tokens.create("other", Role.READ, undefined, now).secret;
  const server = await serveAuthorized(t, cp, { auth: { openStreams: 3 } });
  const mine = clients(server.address, watcher);
  await mine.tasks.runTask({ id: "a", spec: { image: "cube/httpd:local" } });
  await mine.tasks.runTask({ id: "b", spec: { image: "cube/httpd:local" } });
  // A watch from revision 1 answers at once (the later events), so it is known to be open.
  const open = (c: ReturnType<typeof clients>) => {
    const abort = new AbortController();
    const it = c.tasks
      .watchTasks({ afterRevision: 1n }, { signal: abort.signal })
      [Symbol.asyncIterator]();
    return { abort, first: it.next() };
  };
  const held = [open(mine), open(mine), open(mine)];
  for (const w of held) t.false((await w.first).done);
  const fourth = open(mine);
  t.is(await codeOf(fourth.first), Code.ResourceExhausted);
  const theirs = open(clients(server.address, other));
  t.false((await theirs.first).done, "another token's streams are its own");
  theirs.abort.abort();
  // Closing one gives its place back (once the server has seen the stream end).
  held[0]?.abort.abort();
  await opensAgain(() => open(mine));
  for (const w of held) w.abort.abort();
});

test("a token over its call rate gets RESOURCE_EXHAUSTED; its bucket refills with time; other tokens are not slowed", async (t) => {
  const clock = new FakeClock(Date.now());
  const cp = await openControlPlane(new MemoryStore(), {
    logger: createLogger("m", "silent"),
    clock,
  });
  t.teardown(() => cp.close());
  const { record, secret } = cp.tokens.create("busy", Role.READ, undefined, clock.now());
  cp.store.putToken(record);
  const quiet = cp.tokens.create("quiet", Role.READ, undefined, clock.now()).secret;
  const server = await serveAuthorized(t, cp, { auth: { rate: { perSecond: 2, burst: 3 } } });
  const busy = clients(server.address, secret);
  for (let i = 0; i < 3; i++) await busy.tasks.listTasks({});
  t.is(await codeOf(busy.tasks.listTasks({})), Code.ResourceExhausted);
  t.deepEqual((await clients(server.address, quiet).tasks.listTasks({})).tasks, []);
  clock.advance(500); // one call's worth at 2/s
  await busy.tasks.listTasks({});
  t.is(await codeOf(busy.tasks.listTasks({})), Code.ResourceExhausted);
});
