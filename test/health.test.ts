/**
 * grpc.health.v1 (lib/health.ts): Check and Watch through a Connect client, in memory
 * (createRouterTransport) and against a real server, whose close() must report
 * NOT_SERVING to open watchers before it drops them; and from grpc-js, the reference Node
 * gRPC stack, for wire compatibility.
 */
import { fileURLToPath } from "node:url";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import test from "ava";
import { NodeService } from "../gen/cube/v1/node_service_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import {
  Health,
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus as Status,
} from "../gen/grpc/health/v1/health_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { HealthState, registerHealth } from "../lib/rpc/health.js";
import { startServer } from "../lib/rpc/server.js";

/** Reads the next message of a stream, failing after `ms` instead of hanging the test. */
async function next(
  stream: AsyncIterator<HealthCheckResponse>,
  ms = 5000,
): Promise<IteratorResult<HealthCheckResponse>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no Watch message within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([stream.next(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function inMemory() {
  const state = new HealthState();
  const transport = createRouterTransport((router) => registerHealth(router, state));
  return { state, client: createClient(Health, transport) };
}

test("Check: the server is SERVING; a known service has its status; an unknown one is NOT_FOUND", async (t) => {
  const { state, client } = inMemory();
  t.is((await client.check({ service: "" })).status, Status.SERVING);
  state.set("cube.v1.TaskService", Status.NOT_SERVING);
  t.is((await client.check({ service: "cube.v1.TaskService" })).status, Status.NOT_SERVING);
  const error = await t.throwsAsync(client.check({ service: "cube.v1.Nope" }));
  t.is(ConnectError.from(error).code, Code.NotFound);
  t.regex(ConnectError.from(error).rawMessage, /cube\.v1\.Nope/);
});

test("Watch: the current status first, then each change; SERVICE_UNKNOWN until a service is set", async (t) => {
  const { state, client } = inMemory();
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const server = client.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]();
  const other = client
    .watch({ service: "cube.v1.TaskService" }, { signal: abort.signal })
    [Symbol.asyncIterator]();
  t.is((await next(server)).value?.status, Status.SERVING);
  t.is((await next(other)).value?.status, Status.SERVICE_UNKNOWN);
  state.set("cube.v1.TaskService", Status.SERVING);
  t.is((await next(other)).value?.status, Status.SERVING);
  state.set("", Status.NOT_SERVING);
  t.is((await next(server)).value?.status, Status.NOT_SERVING);
  state.set("", Status.SERVING);
  t.is((await next(server)).value?.status, Status.SERVING);
});

test("shutdown() marks the server and every known service NOT_SERVING", async (t) => {
  const { state, client } = inMemory();
  state.set("cube.v1.TaskService", Status.SERVING);
  state.shutdown();
  t.is((await client.check({ service: "" })).status, Status.NOT_SERVING);
  t.is((await client.check({ service: "cube.v1.TaskService" })).status, Status.NOT_SERVING);
});

test("over a real server: Check, Watch, and NOT_SERVING to the watcher once close() starts", async (t) => {
  const server = await startServer({ listen: "127.0.0.1:0", routes() {}, files: [] });
  let closed: Promise<void> | undefined;
  t.teardown(() => closed ?? server.close());
  const client = createClient(Health, grpcTransport(server.address));
  t.is((await client.check({ service: "" })).status, Status.SERVING);

  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const watch = client.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]();
  t.is((await next(watch)).value?.status, Status.SERVING);
  server.health.set("", Status.NOT_SERVING);
  t.is((await next(watch)).value?.status, Status.NOT_SERVING);
  server.health.set("", Status.SERVING);
  t.is((await next(watch)).value?.status, Status.SERVING);

  const started = Date.now();
  closed = server.close();
  t.is((await next(watch)).value?.status, Status.NOT_SERVING);
  await closed;
  t.true(Date.now() - started < 5000, "close() does not wait for the watcher to leave");
  // The stream ends (cleanly or with an error) rather than hanging once the server is gone.
  const end = await next(watch).catch((error: unknown) => ConnectError.from(error));
  t.true(end instanceof ConnectError || end.done === true);
});

test("over a real server: each service of its routes answers by its full name, SERVING, then NOT_SERVING once close() starts", async (t) => {
  const server = await startServer({
    listen: "127.0.0.1:0",
    routes: (router) => {
      router.service(TaskService, {});
      router.service(NodeService, {});
    },
    files: [],
  });
  let closed: Promise<void> | undefined;
  t.teardown(() => closed ?? server.close());
  const client = createClient(Health, grpcTransport(server.address));
  for (const name of [TaskService.typeName, NodeService.typeName]) {
    t.is((await client.check({ service: name })).status, Status.SERVING, name);
  }
  const other = await t.throwsAsync(client.check({ service: "cube.v1.JobService" }));
  t.is(ConnectError.from(other).code, Code.NotFound, "a service the routes do not serve");
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const watch = client
    .watch({ service: TaskService.typeName }, { signal: abort.signal })
    [Symbol.asyncIterator]();
  t.is((await next(watch)).value?.status, Status.SERVING);
  closed = server.close();
  t.is((await next(watch)).value?.status, Status.NOT_SERVING);
  await closed;
});

test("a grpc-js client built from proto/ at run time gets SERVING (wire interop)", async (t) => {
  const server = await startServer({ listen: "127.0.0.1:0", routes() {}, files: [] });
  t.teardown(() => server.close());
  const definition = await protoLoader.load("grpc/health/v1/health.proto", {
    includeDirs: [fileURLToPath(new URL("../proto", import.meta.url))],
    enums: String,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  const client = new pkg.grpc.health.v1.Health(server.address, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const reply = await new Promise<{ status: string }>((resolve, reject) => {
    client.Check(
      { service: "" },
      { deadline: Date.now() + 5000 },
      (error: Error | null, res: { status: string }) => (error ? reject(error) : resolve(res)),
    );
  });
  t.is(reply.status, "SERVING");
});
