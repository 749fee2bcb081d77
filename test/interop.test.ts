/**
 * Interop: a gRPC client that is not Connect — @grpc/grpc-js with the .proto files loaded at
 * run time by @grpc/proto-loader — runs, lists, watches and stops a task on a manager.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import test from "ava";
import { createLogger } from "../lib/logger.js";
import { startManager } from "../manager/index.js";
import { tempDir } from "./fixtures.js";

interface PlainTask {
  id: string;
  state: string;
  desiredState: string;
  reason: string;
  revision: string;
  spec: { image: string; labels: Record<string, string> };
}

type Unary<Req, Res> = (req: Req, cb: (err: grpc.ServiceError | null, res: Res) => void) => void;

interface TaskServiceClient extends grpc.Client {
  RunTask: Unary<object, { task: PlainTask }>;
  ListTasks: Unary<object, { tasks: PlainTask[]; revision: string }>;
  StopTask: Unary<object, { task: PlainTask }>;
  GetTask: Unary<object, { task: PlainTask }>;
  WatchTasks(req: object): grpc.ClientReadableStream<{ event: { type: string; task: PlainTask } }>;
}

/** Sends `token` as a bearer token with every call, as any gRPC client can. */
function withToken(token: string): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

function call<Req, Res>(fn: Unary<Req, Res>, client: grpc.Client, req: Req): Promise<Res> {
  return new Promise((resolve, reject) =>
    fn.call(client, req, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

test("a @grpc/grpc-js client with proto-loader runs, lists, watches and stops a task", async (t) => {
  const manager = await startManager({
    listen: "127.0.0.1:0",
    dataDir: await tempDir(t),
    logger: createLogger("manager", "silent"),
  });
  t.teardown(() => manager.close());
  const definition = await protoLoader.load("cube/v1/task_service.proto", {
    includeDirs: ["proto"],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    cube: {
      v1: {
        TaskService: new (
          address: string,
          creds: grpc.ChannelCredentials,
          options?: grpc.ClientOptions,
        ) => TaskServiceClient;
      };
    };
  };
  const anonymous = new loaded.cube.v1.TaskService(
    manager.address,
    grpc.credentials.createInsecure(),
  );
  t.teardown(() => anonymous.close());
  const refused = await call(anonymous.ListTasks, anonymous, {}).catch((e: grpc.ServiceError) => e);
  t.is((refused as grpc.ServiceError).code, grpc.status.UNAUTHENTICATED);
  const client = new loaded.cube.v1.TaskService(
    manager.address,
    grpc.credentials.createInsecure(),
    { interceptors: [withToken(manager.adminToken ?? "")] },
  );
  t.teardown(() => client.close());

  const run = await call(client.RunTask, client, {
    id: "interop-1",
    spec: { name: "from-grpc-js", image: "cube/httpd:local", labels: { via: "grpc-js" } },
  });
  t.is(run.task.id, "interop-1");
  t.is(run.task.state, "TASK_STATE_PENDING");
  t.is(run.task.desiredState, "DESIRED_STATE_RUNNING");

  const listed = await call(client.ListTasks, client, { labels: { via: "grpc-js" } });
  t.deepEqual(
    listed.tasks.map((x) => [x.id, x.spec.image]),
    [["interop-1", "cube/httpd:local"]],
  );

  const events: string[] = [];
  const watch = client.WatchTasks({ afterRevision: listed.revision, taskId: "interop-1" });
  const sawStop = new Promise<void>((resolve, reject) => {
    watch.on("data", (r) => {
      events.push(`${r.event.type}:${r.event.task.state}`);
      if (r.event.task.state === "TASK_STATE_COMPLETED") resolve();
    });
    watch.on("error", (e: grpc.ServiceError) => {
      if (e.code !== grpc.status.CANCELLED) reject(e);
    });
  });
  // Watching from the listed revision: the stop is seen even if the watch starts after it.
  const stopped = await call(client.StopTask, client, { id: "interop-1" });
  t.is(stopped.task.desiredState, "DESIRED_STATE_STOPPED");
  t.is(stopped.task.state, "TASK_STATE_COMPLETED");
  t.is(stopped.task.reason, "stopped");
  await sawStop;
  watch.cancel();
  t.deepEqual(events, [
    "TASK_EVENT_TYPE_DESIRED_CHANGED:TASK_STATE_PENDING",
    "TASK_EVENT_TYPE_STATE_CHANGED:TASK_STATE_COMPLETED",
  ]);

  const missing = await call(client.GetTask, client, { id: "nope" }).catch(
    (e: grpc.ServiceError) => e,
  );
  t.is((missing as grpc.ServiceError).code, grpc.status.NOT_FOUND);
  const bad = await call(client.RunTask, client, { spec: { image: "" } }).catch(
    (e: grpc.ServiceError) => e,
  );
  t.is((bad as grpc.ServiceError).code, grpc.status.INVALID_ARGUMENT);
  t.regex((bad as grpc.ServiceError).details, /^spec\.image/);
});

test("a @grpc/grpc-js client reads the manager's grpc.health.v1 status", async (t) => {
  const manager = await startManager({
    listen: "127.0.0.1:0",
    dataDir: await tempDir(t),
    logger: createLogger("manager", "silent"),
  });
  t.teardown(() => manager.close());
  const definition = await protoLoader.load("grpc/health/v1/health.proto", {
    includeDirs: ["proto"],
    enums: String,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: {
      health: {
        v1: {
          Health: new (
            a: string,
            c: grpc.ChannelCredentials,
          ) => grpc.Client & { Check: Unary<object, { status: string }> };
        };
      };
    };
  };
  const client = new loaded.grpc.health.v1.Health(
    manager.address,
    grpc.credentials.createInsecure(),
  );
  t.teardown(() => client.close());
  const health = await call(client.Check, client, { service: "" });
  t.is(health.status, "SERVING");
});
