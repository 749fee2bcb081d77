/**
 * One port, every client: the manager answers Connect JSON over HTTP/1.1 (curl without
 * flags, as a browser or Prometheus would come) and gRPC, Connect and gRPC-Web over HTTP/2
 * with prior knowledge, on the same listening port.
 */
import { execFile } from "node:child_process";
import { connect } from "node:net";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import test from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { opensHttp2 } from "../lib/rpc/server.js";
import { startTestManager } from "./fixtures.js";

const run = promisify(execFile);

/** curl's answer body and the HTTP version it spoke. */
async function curl(args: string[]): Promise<{ body: string; version: string; status: string }> {
  const { stdout } = await run("curl", ["-s", "-w", "\n%{http_version} %{http_code}", ...args]);
  const cut = stdout.lastIndexOf("\n");
  const [version = "", status = ""] = stdout.slice(cut + 1).split(" ");
  return { body: stdout.slice(0, cut), version, status };
}

/** A Connect unary call with a JSON body, as the README shows it. */
function connectJson(
  m: { address: string; adminToken: string | undefined },
  method: string,
  body: object,
  http2 = false,
) {
  const address = m.address;
  return curl([
    ...(http2 ? ["--http2-prior-knowledge"] : []),
    "-X",
    "POST",
    "-H",
    "Content-Type: application/json",
    "-H",
    `Authorization: Bearer ${m.adminToken}`,
    `http://${address}/cube.v1.TaskService/${method}`,
    "-d",
    JSON.stringify(body),
  ]);
}

test("curl over HTTP/1.1 runs, lists and stops a task with Connect JSON", async (t) => {
  const m = await startTestManager(t);
  const ran = await connectJson(m, "RunTask", {
    id: "web-1",
    spec: { name: "web", image: "cube/httpd:local" },
  });
  t.is(ran.version, "1.1", "curl spoke HTTP/1.1");
  t.is(ran.status, "200", ran.body);
  t.is(JSON.parse(ran.body).task.id, "web-1");
  const listed = await connectJson(m, "ListTasks", {});
  t.is(listed.version, "1.1");
  t.deepEqual(
    JSON.parse(listed.body).tasks.map((x: { id: string }) => x.id),
    ["web-1"],
  );
  const stopped = await connectJson(m, "StopTask", { id: "web-1" });
  t.is(stopped.status, "200", stopped.body);
  const task = JSON.parse(stopped.body).task;
  t.is(task.state, "TASK_STATE_COMPLETED");
  t.is(task.reason, "stopped");
  // An error keeps Connect's JSON error shape and status over HTTP/1.1 too.
  const missing = await connectJson(m, "GetTask", { id: "nope" });
  t.is(missing.status, "404");
  t.is(JSON.parse(missing.body).code, "not_found");
});

test("gRPC (Connect client, buf curl), gRPC-Web and h2c Connect work on the same port", async (t) => {
  const m = await startTestManager(t);
  const client = createClient(TaskService, grpcTransport(m.address, { token: m.adminToken }));
  const { task } = await client.runTask({ id: "a", spec: { image: "cube/httpd:local" } });
  t.is(task?.state, TaskState.PENDING);
  const h2 = await connectJson(m, "GetTask", { id: "a" }, true);
  t.is(h2.version, "2", "curl spoke HTTP/2 with prior knowledge");
  t.is(JSON.parse(h2.body).task.id, "a");
  const viaGrpc = await run("npx", [
    "buf",
    "curl",
    "--protocol",
    "grpc",
    "--http2-prior-knowledge",
    "-H",
    `Authorization: Bearer ${m.adminToken}`,
    "-d",
    '{"id":"a"}',
    `http://${m.address}/cube.v1.TaskService/GetTask`,
  ]);
  t.is(JSON.parse(viaGrpc.stdout).task.id, "a");
  const viaGrpcWeb = await run("npx", [
    "buf",
    "curl",
    "--protocol",
    "grpcweb",
    "-H",
    `Authorization: Bearer ${m.adminToken}`,
    "-d",
    '{"id":"a"}',
    `http://${m.address}/cube.v1.TaskService/GetTask`,
  ]);
  t.is(JSON.parse(viaGrpcWeb.stdout).task.id, "a");
});

test("a non-RPC path answers 404 on both protocols", async (t) => {
  const m = await startTestManager(t);
  t.is((await curl([`http://${m.address}/nothing`])).status, "404");
  t.is((await curl(["--http2-prior-knowledge", `http://${m.address}/nothing`])).status, "404");
});

test("the HTTP/2 preface split over several packets still opens HTTP/2", async (t) => {
  const m = await startTestManager(t);
  const [host, port] = m.address.split(":") as [string, string];
  const socket = connect(Number(port), host);
  t.teardown(() => socket.destroy());
  await new Promise((resolve) => socket.once("connect", resolve));
  // One byte, a pause, then the rest: the server must wait before it decides.
  socket.write("P");
  await new Promise((resolve) => setTimeout(resolve, 50));
  socket.write("RI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  socket.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])); // an empty SETTINGS frame
  const first = await new Promise<Buffer>((resolve) => socket.once("data", resolve));
  // The server's first frame is its SETTINGS (type 4), not an HTTP/1.1 status line.
  t.is(first[3], 4);
});

test("opensHttp2 decides on the first bytes, and waits while they are a prefix", (t) => {
  const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  t.is(opensHttp2(preface), true);
  t.is(opensHttp2(Buffer.concat([preface, Buffer.from([0, 0, 0, 4])])), true);
  t.is(opensHttp2(preface.subarray(0, 5)), undefined);
  t.is(opensHttp2(Buffer.alloc(0)), undefined);
  t.is(opensHttp2(Buffer.from("POST /cube.v1.TaskService/RunTask HTTP/1.1\r\n")), false);
  t.is(opensHttp2(Buffer.from("PRX")), false);
});
