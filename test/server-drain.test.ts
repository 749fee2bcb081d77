/**
 * A draining server (lib/rpc/drain-streams.ts) ends open response streams at once with
 * UNAVAILABLE "<who> is shutting down", so close() does not wait for its 1 s hard close and
 * a client can tell a shutdown (open the watch again) from a broken connection.
 */
import { connect as h2connect } from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test from "ava";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
} from "../gen/grpc/health/v1/health_pb.js";
import { createLogger } from "../lib/logger.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { startServer } from "../lib/rpc/server.js";
import { startManager } from "../manager/index.js";
import { tempDir } from "./fixtures.js";

/** The server's hard close, which a drain must come in well under. */
const HARD_CLOSE_MS = 1000;

/** The error a stream ends with, failing the test after `ms` instead of hanging. */
async function endOf<T>(stream: AsyncIterator<T>, ms = 5000): Promise<ConnectError | "ok"> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the stream did not end within ${ms} ms`)), ms);
  });
  try {
    for (;;) {
      const r = await Promise.race([stream.next(), timeout]);
      if (r.done) return "ok";
    }
  } catch (error) {
    return ConnectError.from(error);
  } finally {
    clearTimeout(timer);
  }
}

test("a draining server ends a health watch with NOT_SERVING, then UNAVAILABLE, without its hard close", async (t) => {
  const server = await startServer({ listen: "127.0.0.1:0", routes() {}, files: [] });
  let closed: Promise<void> | undefined;
  t.teardown(() => closed ?? server.close());
  const client = createClient(Health, grpcTransport(server.address));
  const watch = client.watch({ service: "" })[Symbol.asyncIterator]();
  t.is((await watch.next()).value?.status, Status.SERVING);

  const started = Date.now();
  closed = server.close();
  t.is((await watch.next()).value?.status, Status.NOT_SERVING);
  const end = await endOf(watch);
  await closed;
  const ms = Date.now() - started;
  t.true(end instanceof ConnectError, "the watch ends with an error, not OK");
  t.is((end as ConnectError).code, Code.Unavailable);
  t.is((end as ConnectError).rawMessage, "the server is shutting down");
  t.true(ms < HARD_CLOSE_MS, `close() took ${ms} ms: the watch held it until the hard close`);
});

test("a manager's close ends open WatchTasks streams with UNAVAILABLE 'the manager is shutting down'", async (t) => {
  const manager = await startManager({
    listen: "127.0.0.1:0",
    dataDir: await tempDir(t),
    logger: createLogger("manager", "silent"),
  });
  let closed: Promise<void> | undefined;
  t.teardown(() => closed ?? manager.close());
  const tasks = createClient(
    TaskService,
    grpcTransport(manager.address, { token: manager.adminToken }),
  );
  const watches = [
    tasks.watchTasks({})[Symbol.asyncIterator](),
    tasks.watchTasks({ taskId: "t1" })[Symbol.asyncIterator](),
  ];
  const firsts = watches.map((w) => w.next());
  await tasks.runTask({ id: "t1", spec: { image: "img" } });
  for (const first of firsts) t.is((await first).value?.event?.task?.id, "t1", "the watch is open");

  const started = Date.now();
  closed = manager.close();
  const ends = await Promise.all(watches.map((w) => endOf(w)));
  await closed;
  const ms = Date.now() - started;
  for (const end of ends) {
    t.true(end instanceof ConnectError, "the watch ends with an error, not OK");
    t.is((end as ConnectError).code, Code.Unavailable);
    t.is((end as ConnectError).rawMessage, "the manager is shutting down");
  }
  t.true(ms < HARD_CLOSE_MS, `close() took ${ms} ms: a watch held it until the hard close`);
});

test("a server stream whose deadline passes ends with DEADLINE_EXCEEDED, not OK (grpc-timeout)", async (t) => {
  const server = await startServer({ listen: "127.0.0.1:0", routes() {}, files: [] });
  t.teardown(() => server.close());
  // A raw gRPC call: a Connect client would enforce the deadline itself, and the point is
  // what the server ends the stream with.
  const session = h2connect(`http://${server.address}`);
  t.teardown(() => session.close());
  const stream = session.request({
    ":method": "POST",
    ":path": "/grpc.health.v1.Health/Watch",
    "content-type": "application/grpc",
    te: "trailers",
    "grpc-timeout": "300m",
  });
  stream.end(Buffer.from([0, 0, 0, 0, 0])); // one empty message: service ""
  const started = Date.now();
  const trailers = await new Promise<Record<string, unknown>>((resolve, reject) => {
    stream.on("trailers", resolve);
    stream.on("error", reject);
    stream.resume();
  });
  t.is(trailers["grpc-status"], String(Code.DeadlineExceeded), JSON.stringify(trailers));
  t.true(Date.now() - started < 3000);
});
