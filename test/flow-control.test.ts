/**
 * Transport settings that keep big answers from crawling (lib/flow-control.ts,
 * lib/server.ts), against a real server on port 0.
 */
import * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Http2SessionManager } from "@connectrpc/connect-node";
import test from "ava";
import { TaskSchema } from "../gen/cube/v1/task_pb.js";
import { GetTaskRequestSchema, GetTaskResponseSchema } from "../gen/cube/v1/task_service_pb.js";
import { SESSION_WINDOW, WideWindowSessionManager } from "../lib/rpc/flow-control.js";
import type { Server } from "../lib/rpc/server.js";
import { serveTaskService } from "./fixtures.js";

const BIG_REASON = "x".repeat(200_000);

/** A server whose GetTask answers a task of ~200 KB (compressible to almost nothing). */
function serve(t: { teardown(fn: () => unknown): void }): Promise<Server> {
  return serveTaskService(t, {
    getTask: (req) => ({ task: create(TaskSchema, { id: req.id, reason: BIG_REASON }) }),
  });
}

/** The connection-level receive window of the session a request of `manager` went on. */
async function sessionWindow(manager: Http2SessionManager): Promise<number | undefined> {
  const stream = await manager.request("POST", "/grpc.health.v1.Health/Check", {}, {});
  const window = stream.session?.state.localWindowSize;
  stream.close();
  stream.session?.close();
  return window;
}

test("WideWindowSessionManager opens the connection window; the default stays at 64 KiB", async (t) => {
  const server = await serve(t);
  const url = `http://${server.address}`;
  const wide = new WideWindowSessionManager(url);
  const plain = new Http2SessionManager(url);
  t.is(await sessionWindow(wide), SESSION_WINDOW);
  t.is(await sessionWindow(plain), 65_535);
});

test("answers go uncompressed even to a client that accepts gzip", async (t) => {
  const server = await serve(t);
  const session = http2.connect(`http://${server.address}`);
  t.teardown(() => session.close());
  const request = toBinary(GetTaskRequestSchema, create(GetTaskRequestSchema, { id: "a" }));
  const envelope = Buffer.alloc(5 + request.length);
  envelope.writeUInt32BE(request.length, 1);
  envelope.set(request, 5);
  const stream = session.request({
    ":method": "POST",
    ":path": "/cube.v1.TaskService/GetTask",
    "content-type": "application/grpc",
    te: "trailers",
    "grpc-accept-encoding": "gzip",
  });
  stream.end(envelope);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  t.is(body[0], 0, "the message's compressed flag");
  const task = fromBinary(GetTaskResponseSchema, body.subarray(5, 5 + body.readUInt32BE(1))).task;
  t.is(task?.reason.length, BIG_REASON.length);
});
