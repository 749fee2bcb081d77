/**
 * Bounded input (issue 15, point 4) on real servers over real sockets: request size limits
 * enforced on the decompressed size, idle connections closed, unknown fields and enum
 * values refused by name, control and bidirectional-override characters refused.
 */
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { createGzip } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Code, createClient } from "@connectrpc/connect";
import test from "ava";
import { type Protocol, TaskSpecSchema } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { startServer } from "../lib/rpc/server.js";
import { MANAGER_FILES, managerRoutes } from "../manager/api/routes.js";
import { openControlPlane } from "../manager/index.js";
import { MemoryStore } from "../manager/store/memory-store.js";
import { errorOf } from "./error-of.js";
import { startTestManager, tempDir } from "./fixtures.js";
import { spawnCube } from "./manager-process.js";

/** A gzip body that inflates to `size` bytes of JSON-ish text, compressed as it streams. */
async function gzipBomb(size: number): Promise<Buffer> {
  const gzip = createGzip({ level: 9 });
  const chunks: Buffer[] = [];
  gzip.on("data", (c: Buffer) => chunks.push(c));
  const done = new Promise((resolve) => gzip.on("end", resolve));
  gzip.write('{"id":"');
  const block = Buffer.alloc(1 << 20, "a");
  for (let n = 0; n < size; n += block.length) {
    if (!gzip.write(block)) await new Promise((resolve) => gzip.once("drain", resolve));
  }
  gzip.end('"}');
  await done;
  return Buffer.concat(chunks);
}

function rssBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"));
  return Number(/(\d+)/.exec(line ?? "")?.[1] ?? 0) * 1024;
}

test("a gzip bomb is refused with RESOURCE_EXHAUSTED before it inflates, and the manager's RSS grows under 64 MiB", async (t) => {
  const dir = await tempDir(t);
  const m = await spawnCube(t, "manager/main.ts", {
    CUBE_DATA_DIR: dir,
    CUBE_LISTEN: "127.0.0.1:0",
    CUBE_LOG_LEVEL: "warn",
  });
  const pid = m.child.pid as number;
  const bomb = await gzipBomb(400 << 20);
  t.log(`bomb: ${bomb.length} bytes gzip → 400 MiB`);
  // Warm the manager up so its baseline RSS includes the connection and handler code.
  await fetch(`http://${m.address}/cube.v1.TaskService/ListTasks`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${m.token}` },
    body: "{}",
  });
  const before = rssBytes(pid);
  const began = Date.now();
  const res = await fetch(`http://${m.address}/cube.v1.TaskService/GetTask`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "content-encoding": "gzip",
      authorization: `Bearer ${m.token}`,
    },
    body: bomb,
  });
  const took = Date.now() - began;
  const body = (await res.json()) as { code: string; message: string };
  const grew = rssBytes(pid) - before;
  t.log(
    `answered ${res.status} ${body.code} in ${took} ms; RSS grew ${(grew / 2 ** 20).toFixed(1)} MiB`,
  );
  t.is(body.code, "resource_exhausted");
  t.regex(body.message, /larger than configured readMaxBytes/);
  t.true(grew < 64 << 20, `RSS grew ${grew} bytes`);
});

test("a request message over 4 MiB is RESOURCE_EXHAUSTED; one under it is served", async (t) => {
  const m = await startTestManager(t);
  const client = createClient(TaskService, grpcTransport(m.address, { token: m.adminToken }));
  const big = await errorOf(
    client.runTask({ spec: { image: "x", env: { BIG: "v".repeat(5 << 20) } } }),
  );
  t.is(big.code, Code.ResourceExhausted);
  const ok = await client.runTask({ spec: { image: "cube/httpd:local" } });
  t.truthy(ok.task?.id);
});

test('unknown JSON fields ("privileged": true) and enum names are INVALID_ARGUMENT naming them', async (t) => {
  const m = await startTestManager(t);
  const post = async (body: object) => {
    const res = await fetch(`http://${m.address}/cube.v1.TaskService/RunTask`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${m.adminToken}` },
      body: JSON.stringify(body),
    });
    return { status: res.status, ...((await res.json()) as { code: string; message: string }) };
  };
  const privileged = await post({ spec: { image: "cube/httpd:local", privileged: true } });
  t.is(privileged.code, "invalid_argument");
  t.regex(privileged.message, /privileged/);
  const mode = await post({
    spec: { image: "cube/httpd:local", restartPolicy: { mode: "RESTART_MODE_SOMETIMES" } },
  });
  t.is(mode.code, "invalid_argument");
  t.regex(mode.message, /RESTART_MODE_SOMETIMES/);
  // Nothing was stored by either.
  const listed = await fetch(`http://${m.address}/cube.v1.TaskService/ListTasks`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${m.adminToken}` },
    body: "{}",
  });
  t.deepEqual(await listed.json(), {});
});

test("binary requests with an unknown field or enum number are INVALID_ARGUMENT naming the path", async (t) => {
  const m = await startTestManager(t);
  const client = createClient(TaskService, grpcTransport(m.address, { token: m.adminToken }));
  // A spec from a "newer" client: field 99 this manager does not know.
  const spec = create(TaskSpecSchema, { image: "cube/httpd:local" });
  const field99 = new BinaryWriter().tag(99, WireType.Varint).bool(true).finish();
  spec.$unknown = [{ no: 99, wireType: WireType.Varint, data: field99.subarray(2) }];
  const unknown = await errorOf(client.runTask({ spec }));
  t.is(unknown.code, Code.InvalidArgument);
  t.is(unknown.rawMessage, "spec: unknown field number 99 (not in cube.v1.TaskSpec)");
  const badEnum = await errorOf(
    client.runTask({
      spec: { image: "x", ports: [{ containerPort: 80, protocol: 9 as Protocol }] },
    }),
  );
  t.is(badEnum.code, Code.InvalidArgument);
  t.is(badEnum.rawMessage, "spec.ports[0].protocol: unknown enum value 9");
  const { tasks } = await client.listTasks({});
  t.deepEqual(tasks, [], "nothing stored");
});

test("names and labels with control or bidirectional-override characters are refused", async (t) => {
  const m = await startTestManager(t);
  const client = createClient(TaskService, grpcTransport(m.address, { token: m.adminToken }));
  const cases: [string, Parameters<typeof client.runTask>[0], RegExp][] = [
    [
      "bidi override in a name",
      { spec: { image: "x", name: "web\u202eexe" } },
      /^spec\.name: .*bidirectional/,
    ],
    [
      "isolate in a name",
      { spec: { image: "x", name: "a\u2066b" } },
      /^spec\.name: .*bidirectional/,
    ],
    ["C1 control in a name", { spec: { image: "x", name: "a\u009bb" } }, /^spec\.name: .*control/],
    [
      "bidi in a label value",
      { spec: { image: "x", labels: { team: "a\u202eb" } } },
      /^spec\.labels\["team"\]/,
    ],
    [
      "control in a label key",
      { spec: { image: "x", labels: { "a\u0007": "b" } } },
      /^spec\.labels\["a\?"\]/,
    ],
    ["non-ASCII in an id", { id: "web\u202e1", spec: { image: "x" } }, /^id: /],
  ];
  for (const [name, request, message] of cases) {
    const error = await errorOf(client.runTask(request));
    t.is(error.code, Code.InvalidArgument, name);
    t.regex(error.rawMessage, message, name);
  }
});

test("connections that send nothing, and idle HTTP/2 connections, are closed after their timeouts", async (t) => {
  const cp = await openControlPlane(new MemoryStore(), { logger: createLogger("m", "silent") });
  t.teardown(() => cp.close());
  const server = await startServer({
    listen: "127.0.0.1:0",
    routes: managerRoutes(cp),
    files: MANAGER_FILES,
    limits: { firstBytesTimeoutMs: 300, idleTimeoutMs: 400 },
  });
  t.teardown(() => server.close());
  const [host, port] = server.address.split(":") as [string, string];
  const silent: Socket[] = await Promise.all(
    Array.from(
      { length: 100 },
      () =>
        new Promise<Socket>((resolve) => {
          const s = connect(Number(port), host, () => resolve(s));
        }),
    ),
  );
  const closed = silent.map(
    (s) => new Promise<number>((resolve) => s.once("close", () => resolve(Date.now()))),
  );
  const began = Date.now();
  const times = await Promise.all(closed);
  const slowest = Math.max(...times) - began;
  t.log(`100 silent connections all closed within ${slowest} ms (first-bytes timeout 300 ms)`);
  t.true(slowest < 15_000, `${slowest} ms`);

  // An HTTP/2 client that opened its connection (preface, settings) and then sits idle (no
  // call, no pings) is let go too.
  const h2 = connect(Number(port), host);
  await new Promise((resolve) => h2.once("connect", resolve));
  h2.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  h2.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
  const idleClosed = new Promise<number>((resolve) => h2.once("close", () => resolve(Date.now())));
  h2.on("data", () => undefined);
  const opened = Date.now();
  const idleFor = (await idleClosed) - opened;
  t.log(`idle HTTP/2 connection closed after ${idleFor} ms (idle timeout 400 ms)`);
  t.true(idleFor >= 300 && idleFor < 15_000, `${idleFor} ms`);
});
