/**
 * What a caller can make a server hold before it is known (lib/rpc/http-layer.ts, the gates of
 * lib/rpc/server.ts), on real servers over real sockets: a call is decided from its headers,
 * so a call without a token is answered before its body is read — or even sent; a body
 * that does not come in within the body timeout ends the call (streams are not timed);
 * HTTP/2 headers are held to the same 16 KiB as HTTP/1.1's; callers without a token count
 * their open streams per address; refusals are logged at most 10 a second.
 */
import * as http2 from "node:http2";
import { connect } from "node:net";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import test, { type ExecutionContext } from "ava";
import { createHollowDriver } from "../bench/hollow-driver.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { Role } from "../gen/cube/v1/token_service_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { LogThrottle } from "../lib/log-throttle.js";
import { createLogger, type Logger } from "../lib/logger.js";
import { grpcTransport } from "../lib/rpc/client.js";
import type { ServerLimits } from "../lib/rpc/server.js";
import type { AuthOptions } from "../manager/api/authorization.js";
import { openControlPlane } from "../manager/index.js";
import { MemoryStore } from "../manager/store/memory-store.js";
import { startWorker } from "../worker/index.js";
import { FakeClock } from "./fake-clock.js";
import { serveAuthorized, startTestManager, TEST_SANDBOXES, tempDir } from "./fixtures.js";
import { eventually, opensAgain } from "./manager-harness.js";

const silent = createLogger("test", "silent");

/** A logger whose lines are kept (parsed), at warn level. */
async function keptLogs(): Promise<{ lines: Record<string, unknown>[]; logger: Logger }> {
  const lines: Record<string, unknown>[] = [];
  const { pino } = await import("pino");
  const logger = pino({ level: "warn" }, {
    write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>),
  } as unknown as NodeJS.WritableStream);
  return { lines, logger };
}

/** A server with the manager's routes and authorization, and an operator token for it. */
async function bed(
  t: ExecutionContext,
  o: { limits?: Partial<ServerLimits>; auth?: AuthOptions; logger?: Logger } = {},
) {
  const cp = await openControlPlane(new MemoryStore(), { logger: silent });
  t.teardown(() => cp.close());
  const operator = cp.tokens.create("op", Role.OPERATOR, undefined, Date.now()).secret;
  const server = await serveAuthorized(t, cp, o);
  return { address: server.address, operator };
}

/** What a raw HTTP/1.1 exchange brought back: the text, and when its first byte came. */
interface H1Answer {
  readonly text: string;
  /** Milliseconds from the request to the answer's first byte. */
  readonly firstMs: number;
  /** Whether the server closed the connection (within `waitMs`). */
  readonly closed: boolean;
}

/**
 * Sends `head` (CRLF-joined, then an empty line) and `body` on a new connection — a body
 * shorter than its Content-Length is never finished — and reads until the server closes
 * or `waitMs` pass.
 */
function h1(address: string, head: string[], body = "", waitMs = 5000): Promise<H1Answer> {
  const [host, port] = address.split(":") as [string, string];
  return new Promise((resolve, reject) => {
    const began = performance.now();
    let text = "";
    let firstMs = -1;
    const socket = connect(Number(port), host, () => {
      socket.write(`${[...head, "", ""].join("\r\n")}${body}`);
    });
    const done = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, firstMs, closed });
    };
    const timer = setTimeout(() => done(false), waitMs);
    socket.on("data", (d) => {
      if (firstMs < 0) firstMs = performance.now() - began;
      text += d.toString();
    });
    socket.on("close", () => done(true));
    socket.on("error", reject);
  });
}

/** What an HTTP/2 exchange brought back. */
interface H2Answer {
  readonly status: number;
  readonly headers: http2.IncomingHttpHeaders;
  readonly trailers: http2.IncomingHttpHeaders;
  readonly text: string;
  /** The stream's close code (0: NO_ERROR, as after a complete answer or a reset without error). */
  readonly rstCode: number | undefined;
  readonly firstMs: number;
}

/**
 * One request on an HTTP/2 connection: `headers`, then `body` if any, and the request is
 * never ended (its body never completes); resolves once the stream closes.
 */
function h2(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Uint8Array,
): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const began = performance.now();
    const stream = session.request({ ":method": "POST", ...headers }, { endStream: false });
    if (body) stream.write(body);
    let status = 0;
    let firstMs = -1;
    let got: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    let text = "";
    stream.on("response", (h) => {
      firstMs = performance.now() - began;
      status = Number(h[":status"]);
      got = h;
    });
    stream.on("trailers", (h) => {
      trailers = h;
    });
    stream.on("data", (d: Buffer) => {
      text += d.toString("latin1");
    });
    stream.on("error", () => undefined);
    stream.on("close", () => {
      if (status === 0) reject(new Error(`stream closed without an answer (${stream.rstCode})`));
      else resolve({ status, headers: got, trailers, text, rstCode: stream.rstCode, firstMs });
    });
  });
}

function h2Session(t: ExecutionContext, address: string): http2.ClientHttp2Session {
  const session = http2.connect(`http://${address}`, { maxSessionMemory: 1000 });
  session.on("error", () => undefined);
  t.teardown(() => session.destroy());
  return session;
}

/** The grpc-status of a gRPC answer: its trailers', or its headers' (trailers-only). */
const grpcStatus = (a: H2Answer) => a.trailers["grpc-status"] ?? a.headers["grpc-status"];

/** A gRPC message frame announcing `length` bytes, followed by `sent` of them. */
function frameStart(length: number, sent: number): Buffer {
  const frame = Buffer.alloc(5 + sent, 0x0a);
  frame[0] = 0;
  frame.writeUInt32BE(length, 1);
  return frame;
}

const LIST_TASKS = "/cube.v1.TaskService/ListTasks";

test("a call without a token is answered from its headers: its body is never waited for (HTTP/1.1 and HTTP/2; Connect, gRPC-Web, gRPC)", async (t) => {
  const m = await startTestManager(t);
  // HTTP/1.1, Connect: 4 MiB announced, not a byte sent.
  const connectH1 = await h1(m.address, [
    `POST ${LIST_TASKS} HTTP/1.1`,
    `Host: ${m.address}`,
    "Content-Type: application/json",
    `Content-Length: ${(4 << 20) - 100}`,
  ]);
  t.regex(connectH1.text, /^HTTP\/1\.1 401 /);
  t.regex(connectH1.text, /"code":"unauthenticated"/);
  t.regex(connectH1.text, /connection: close/i);
  t.true(connectH1.closed, "the connection is closed rather than waiting for the body");
  t.log(`HTTP/1.1 answered in ${connectH1.firstMs.toFixed(0)} ms without its body`);
  // HTTP/1.1, gRPC-Web: the status in its trailers.
  const webH1 = await h1(m.address, [
    `POST ${LIST_TASKS} HTTP/1.1`,
    `Host: ${m.address}`,
    "Content-Type: application/grpc-web+proto",
    "Content-Length: 1000",
  ]);
  t.regex(webH1.text, /^HTTP\/1\.1 200 /);
  t.regex(webH1.text, /grpc-status: ?16/);
  t.true(webH1.closed);
  // HTTP/2: the answer, then the stream reset with NO_ERROR; the connection goes on.
  const session = h2Session(t, m.address);
  const connectH2 = await h2(session, {
    ":path": LIST_TASKS,
    "content-type": "application/json",
    "content-length": String(4 << 20),
  });
  t.is(connectH2.status, 401);
  t.regex(connectH2.text, /"code":"unauthenticated"/);
  t.is(connectH2.rstCode, http2.constants.NGHTTP2_NO_ERROR);
  const grpcH2 = await h2(session, {
    ":path": LIST_TASKS,
    "content-type": "application/grpc",
    te: "trailers",
  });
  t.is(grpcH2.status, 200);
  t.is(grpcStatus(grpcH2), "16");
  t.is(grpcH2.rstCode, http2.constants.NGHTTP2_NO_ERROR);
  // Half a frame sent (the announced 4 MiB never come): answered all the same.
  const halfFrame = await h2(
    session,
    { ":path": LIST_TASKS, "content-type": "application/grpc", te: "trailers" },
    frameStart((4 << 20) - 5, 1000),
  );
  t.is(grpcStatus(halfFrame), "16");
  t.false(session.destroyed, "the connection stays open");
  const { tasks } = await createClient(
    TaskService,
    grpcTransport(m.address, { token: m.adminToken }),
  ).listTasks({});
  t.deepEqual(tasks, [], "and the manager serves callers with a token");
});

test("an HTTP/1.0 request without Host is answered 400, and the server goes on", async (t) => {
  const m = await startTestManager(t);
  // connect-node cannot make such a request's URL, and threw from the request listener:
  // one packet from anyone ended the process.
  const answer = await h1(
    m.address,
    [
      "POST /grpc.health.v1.Health/Check HTTP/1.0",
      "Content-Type: application/json",
      "Content-Length: 2",
    ],
    "{}",
  );
  t.regex(answer.text, /^HTTP\/1\.1 400 /);
  t.regex(answer.text, /unable to determine request authority/);
  const health = createClient(Health, grpcTransport(m.address));
  t.is((await health.check({ service: "" })).status, 1, "still serving");
});

test("the worker's own port answers a call without its secret before the body too", async (t) => {
  const m = await startTestManager(t);
  const w = await startWorker({
    ...TEST_SANDBOXES,
    manager: m.address,
    token: m.workerToken,
    listen: "127.0.0.1:0",
    driver: createHollowDriver(),
    dataDir: join(await tempDir(t), "w"),
    logger: silent,
  });
  t.teardown(() => w.close());
  const answer = await h1(w.address, [
    `POST ${LIST_TASKS} HTTP/1.1`,
    `Host: ${w.address}`,
    "Content-Type: application/json",
    `Content-Length: ${4 << 20}`,
  ]);
  t.regex(answer.text, /^HTTP\/1\.1 401 /);
  t.regex(answer.text, /a worker answers only its manager/);
  t.true(answer.closed);
  const grpc = await h2(h2Session(t, w.address), {
    ":path": LIST_TASKS,
    "content-type": "application/grpc",
    te: "trailers",
  });
  t.is(grpcStatus(grpc), "16");
});

test("a gzip bomb without a token is UNAUTHENTICATED: nothing is inflated for a caller not let in", async (t) => {
  const m = await startTestManager(t);
  // 16 MiB inflated (four times the largest message) from ~70 KiB.
  const bomb = gzipSync(Buffer.alloc(16 << 20, "a"), { level: 1 });
  const res = await fetch(`http://${m.address}/cube.v1.TaskService/GetTask`, {
    method: "POST",
    headers: { "content-type": "application/json", "content-encoding": "gzip" },
    body: bomb,
  });
  const body = (await res.json()) as { code: string };
  t.is(res.status, 401);
  t.is(body.code, "unauthenticated");
  // What anyone may call reads small messages only (64 KiB).
  const health = createClient(Health, grpcTransport(m.address));
  const big = await health.check({ service: "x".repeat(100 << 10) }).catch((e) => e);
  t.is(ConnectError.from(big).code, Code.ResourceExhausted);
  t.is((await health.check({ service: "" })).status, 1);
});

test("a body that does not come in within the body timeout ends its call with DEADLINE_EXCEEDED; streams are not timed", async (t) => {
  const { address, operator } = await bed(t, { limits: { bodyTimeoutMs: 300 } });
  // HTTP/1.1, Connect: 1,000 bytes announced, 4 sent.
  const slow = await h1(
    address,
    [
      `POST ${LIST_TASKS} HTTP/1.1`,
      `Host: ${address}`,
      `Authorization: Bearer ${operator}`,
      "Content-Type: application/json",
      "Content-Length: 1000",
    ],
    '{"pa',
  );
  t.regex(slow.text, /"code":"deadline_exceeded"/);
  t.regex(slow.text, /did not come in within 0\.3 s/);
  t.true(slow.closed);
  t.true(slow.firstMs >= 250 && slow.firstMs < 5000, `${slow.firstMs} ms`);
  // HTTP/2, gRPC: half a message.
  const session = h2Session(t, address);
  const grpc = await h2(
    session,
    {
      ":path": LIST_TASKS,
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer ${operator}`,
    },
    frameStart(1000, 10),
  );
  t.is(grpcStatus(grpc), String(Code.DeadlineExceeded));
  t.true(grpc.firstMs >= 250 && grpc.firstMs < 5000, `${grpc.firstMs} ms`);
  t.is(grpc.rstCode, http2.constants.NGHTTP2_NO_ERROR);

  // A watch (server-streaming: its one request message came at once) outlives the timeout…
  const tasks = createClient(TaskService, grpcTransport(address, { token: operator }));
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const watch = tasks.watchTasks({}, { signal: abort.signal })[Symbol.asyncIterator]();
  const first = watch.next();
  await new Promise((r) => setTimeout(r, 800));
  await tasks.runTask({ id: "late", spec: { image: "cube/httpd:local" } });
  const event = await first;
  t.false(event.done);
  t.is(event.value?.event?.task?.id, "late");
  // …and so does a bidirectional stream whose messages come as they please (reflection).
  const reflection = createClient(ServerReflection, grpcTransport(address));
  const asks = async function* () {
    yield { messageRequest: { case: "listServices" as const, value: "" } };
    await new Promise((r) => setTimeout(r, 800));
    yield { messageRequest: { case: "listServices" as const, value: "" } };
  };
  let answers = 0;
  for await (const answer of reflection.serverReflectionInfo(asks())) {
    t.is(answer.messageResponse.case, "listServicesResponse");
    answers++;
  }
  t.is(answers, 2);
});

test("HTTP/2 request headers over 16 KiB are refused with 431, as HTTP/1.1's are; the connection goes on", async (t) => {
  const { address } = await bed(t);
  const session = http2.connect(`http://${address}`, { maxSessionMemory: 1000 });
  session.on("error", () => undefined);
  t.teardown(() => session.destroy());
  const headers = (kib: number) => {
    const h: http2.OutgoingHttpHeaders = {
      ":path": "/grpc.health.v1.Health/Check",
      "content-type": "application/json",
    };
    for (let i = 0; i < kib; i++) h[`x-h${i}`] = "a".repeat(1000);
    return h;
  };
  const over = await h2(session, headers(17), Buffer.from("{}"));
  t.is(over.status, 431);
  t.is(over.rstCode, http2.constants.NGHTTP2_NO_ERROR);
  const under = await new Promise<number>((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ...headers(15) });
    stream.end("{}");
    stream.on("response", (h) => resolve(Number(h[":status"])));
    stream.on("error", reject);
    stream.resume();
  });
  t.is(under, 200);
  const h1Over = await h1(address, [
    "POST /grpc.health.v1.Health/Check HTTP/1.1",
    `Host: ${address}`,
    ...Array.from({ length: 20 }, (_, i) => `X-H${i}: ${"a".repeat(1000)}`),
    "Content-Length: 0",
  ]);
  t.regex(h1Over.text, /^HTTP\/1\.1 431 /);
});

test("callers without a token hold their open streams per address: one holding all of its own locks no other out", async (t) => {
  const { address } = await bed(t, { auth: { anyoneOpenStreams: 3 } });
  const watch = (client: ReturnType<typeof createClient<typeof Health>>) => {
    const abort = new AbortController();
    t.teardown(() => abort.abort());
    const it = client.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]();
    return { abort, first: it.next() };
  };
  const here = createClient(Health, grpcTransport(address));
  const held = [watch(here), watch(here), watch(here)];
  for (const w of held) t.false((await w.first).done);
  const fourth = await watch(here).first.catch((e) => ConnectError.from(e));
  t.true(fourth instanceof ConnectError);
  t.is((fourth as ConnectError).code, Code.ResourceExhausted);
  t.regex((fourth as ConnectError).rawMessage, /callers without a token from 127\.0\.0\.1/);
  // Another address (127.0.0.2 is loopback too) has its own count.
  const there = createClient(
    Health,
    createGrpcTransport({
      baseUrl: `http://${address}`,
      // Passed on to net.connect, which @types/node's http2 options do not list.
      nodeOptions: { localAddress: "127.0.0.2" } as http2.ClientSessionOptions,
    }),
  );
  const theirs = watch(there);
  t.false((await theirs.first).done, "a watch from another address is let in");
  // Closing one gives its place back.
  held[0]?.abort.abort();
  await opensAgain(() => watch(here));
});

test("refusals are logged at most 10 a second; the rest are counted in one line", async (t) => {
  const { lines, logger } = await keptLogs();
  const { address } = await bed(t, { logger });
  const tasks = createClient(TaskService, grpcTransport(address));
  const refused = await Promise.all(
    Array.from({ length: 200 }, () => tasks.listTasks({}).catch((e) => ConnectError.from(e))),
  );
  t.true(refused.every((e) => e instanceof ConnectError && e.code === Code.Unauthenticated));
  const counted = await eventually(() => {
    const logged = lines.filter((l) => l.msg === "call refused").length;
    const notLogged = lines.reduce((n, l) => n + Number(l.notLogged ?? 0), 0);
    if (logged + notLogged < 200) throw new Error(`${logged} + ${notLogged} of 200`);
    return { logged, notLogged };
  }, 5000);
  t.log(`${counted.logged} lines, ${counted.notLogged} counted`);
  t.is(counted.logged + counted.notLogged, 200);
  t.true(counted.logged <= 20, `${counted.logged} lines`);
  const first = lines[0] ?? {};
  t.is(first.procedure, LIST_TASKS);
  t.is(first.code, "Unauthenticated");
  t.is(first.from, "127.0.0.1");
  t.is(first.authorization, "none");
});

test("LogThrottle: N lines a second, then one line counting the rest once the second is over", async (t) => {
  const { lines, logger } = await keptLogs();
  const clock = new FakeClock();
  const log = new LogThrottle(logger, "call refused", 3, clock);
  for (let i = 0; i < 10; i++) log.warn({ i });
  t.deepEqual(
    lines.map((l) => l.i),
    [0, 1, 2],
  );
  clock.advance(1000);
  t.is(lines.length, 4);
  t.is(lines[3]?.notLogged, 7);
  t.is(lines[3]?.msg, "call refused: 7 more in that second, not logged");
  log.warn({ i: 10 });
  t.is(lines.length, 5, "a new second logs again");
  clock.advance(5000);
  t.is(lines.length, 5, "nothing left out, nothing counted");
});
