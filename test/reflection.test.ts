/**
 * gRPC server reflection (lib/reflection.ts) against a real server on port 0: through
 * buf curl, the way people use it, and through Connect clients of v1 and v1alpha for
 * the protocol's details.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test from "ava";
import { TaskSchema } from "../gen/cube/v1/task_pb.js";
import { ServerReflection as ReflectionV1 } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import type { Server } from "../lib/rpc/server.js";
import { serveTaskService } from "./fixtures.js";

const BUF = fileURLToPath(new URL("../node_modules/.bin/buf", import.meta.url));
const run = promisify(execFile);

/** A server offering TaskService, whose GetTask echoes the id (the rest is unimplemented). */
function serve(t: { teardown(fn: () => unknown): void }): Promise<Server> {
  return serveTaskService(t, {
    getTask(req) {
      if (!req.id) throw new ConnectError("id is required", Code.InvalidArgument);
      return { task: create(TaskSchema, { id: req.id }) };
    },
  });
}

/** Runs `buf curl` over gRPC with prior-knowledge h2c; killed when the test ends. */
async function bufCurl(
  t: { teardown(fn: () => unknown): void },
  args: string[],
): Promise<{ stdout: string; stderr: string }> {
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  return run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], {
    signal: abort.signal,
    timeout: 30_000,
  });
}

test("buf curl lists the services: the server's, health and reflection", async (t) => {
  const server = await serve(t);
  const { stdout } = await bufCurl(t, ["--list-services", `http://${server.address}`]);
  t.deepEqual(stdout.trim().split("\n").sort(), [
    "cube.v1.TaskService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
  ]);
});

test("buf curl lists the methods of TaskService", async (t) => {
  const server = await serve(t);
  const { stdout } = await bufCurl(t, ["--list-methods", `http://${server.address}`]);
  const methods = stdout.trim().split("\n");
  t.true(methods.includes("cube.v1.TaskService/RunTask"));
  t.true(methods.includes("cube.v1.TaskService/WatchTasks"));
  t.true(methods.includes("grpc.health.v1.Health/Watch"));
});

test("buf curl calls Health/Check by reflection → SERVING", async (t) => {
  const server = await serve(t);
  const { stdout } = await bufCurl(t, [
    "--data",
    '{"service":""}',
    `http://${server.address}/grpc.health.v1.Health/Check`,
  ]);
  t.deepEqual(JSON.parse(stdout), { status: "SERVING" });
});

test("buf curl calls TaskService/GetTask by reflection (request and response types resolved)", async (t) => {
  const server = await serve(t);
  const { stdout } = await bufCurl(t, [
    "--data",
    '{"id":"t-1"}',
    `http://${server.address}/cube.v1.TaskService/GetTask`,
  ]);
  t.is(JSON.parse(stdout).task.id, "t-1");
});

test("buf curl through the v1alpha reflection protocol", async (t) => {
  const server = await serve(t);
  const { stdout } = await bufCurl(t, [
    "--reflect-protocol",
    "grpc-v1alpha",
    "--data",
    '{"service":""}',
    `http://${server.address}/grpc.health.v1.Health/Check`,
  ]);
  t.deepEqual(JSON.parse(stdout), { status: "SERVING" });
});

/** Sends `requests` on one reflection stream and returns the responses, in order. */
async function reflect<T>(
  send: (requests: AsyncIterable<T>) => AsyncIterable<unknown>,
  requests: T[],
): Promise<unknown[]> {
  async function* all() {
    yield* requests;
  }
  const out: unknown[] = [];
  for await (const response of send(all())) out.push(response);
  return out;
}

/** A reflection response of either version, as far as the tests look at it. */
interface Answer {
  validHost: string;
  originalRequest?: { messageRequest: { value?: unknown } };
  messageResponse: { case: string | undefined; value?: unknown };
}

/** Names of the files in a file_descriptor_response. */
function fileNames(response: unknown): string[] {
  const r = response as {
    messageResponse: { case: string; value: { fileDescriptorProto?: Uint8Array[] } };
  };
  if (r.messageResponse.case !== "fileDescriptorResponse") {
    throw new Error(`expected fileDescriptorResponse, got ${r.messageResponse.case}`);
  }
  return (r.messageResponse.value.fileDescriptorProto ?? []).map(
    (bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name,
  );
}

test("v1alpha: list, file by symbol with its imports once per stream, file by name, NOT_FOUND", async (t) => {
  const server = await serve(t);
  const client = createClient(ReflectionV1alpha, grpcTransport(server.address));
  const responses = await reflect(
    (r) => client.serverReflectionInfo(r),
    [
      { host: "h", messageRequest: { case: "listServices" as const, value: "" } },
      {
        host: "h",
        messageRequest: { case: "fileContainingSymbol" as const, value: "cube.v1.TaskService" },
      },
      {
        host: "h",
        messageRequest: { case: "fileByFilename" as const, value: "cube/v1/task.proto" },
      },
      {
        host: "h",
        messageRequest: { case: "fileContainingSymbol" as const, value: "cube.v1.Nope" },
      },
    ],
  );
  t.is(responses.length, 4);
  const [list, bySymbol, byName, missing] = responses as [Answer, Answer, Answer, Answer];
  t.is(list.validHost, "h");
  t.is(list.messageResponse.case, "listServicesResponse");
  const services = (list.messageResponse.value as { service: { name: string }[] }).service;
  t.deepEqual(
    services.map((s) => s.name),
    [
      "cube.v1.TaskService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ],
  );
  t.deepEqual(fileNames(bySymbol).sort(), [
    "cube/v1/task.proto",
    "cube/v1/task_service.proto",
    "google/protobuf/duration.proto",
    "google/protobuf/timestamp.proto",
  ]);
  t.is(fileNames(bySymbol)[0], "cube/v1/task_service.proto", "the asked-for file comes first");
  // Already sent on this stream, with its imports: only the file itself comes again.
  t.deepEqual(fileNames(byName), ["cube/v1/task.proto"]);
  t.is(missing.messageResponse.case, "errorResponse");
  t.is((missing.messageResponse.value as { errorCode: number }).errorCode, 5);
  t.is(missing.originalRequest?.messageRequest.value, "cube.v1.Nope");
});

test("v1: methods, nested messages, enums, enum values and fields resolve to their file", async (t) => {
  const server = await serve(t);
  const client = createClient(ReflectionV1, grpcTransport(server.address));
  const symbols = [
    "cube.v1.TaskService.RunTask",
    "cube.v1.TaskSpec.EnvEntry",
    "cube.v1.TaskState",
    "cube.v1.TASK_STATE_RUNNING",
    "cube.v1.Task.worker_id",
    "grpc.health.v1.HealthCheckResponse.ServingStatus",
    "google.protobuf.Timestamp",
  ];
  const responses = await reflect(
    (r) => client.serverReflectionInfo(r),
    symbols.map((value) => ({
      host: "",
      messageRequest: { case: "fileContainingSymbol" as const, value },
    })),
  );
  t.deepEqual(
    responses.map((r) => fileNames(r)[0]),
    [
      "cube/v1/task_service.proto",
      "cube/v1/task.proto",
      "cube/v1/task.proto",
      "cube/v1/task.proto",
      "cube/v1/task.proto",
      "grpc/health/v1/health.proto",
      "google/protobuf/timestamp.proto",
    ],
  );
});

test("v1: unknown file, unknown extension, extension numbers and an empty request", async (t) => {
  const server = await serve(t);
  const client = createClient(ReflectionV1, grpcTransport(server.address));
  const responses = (await reflect(
    (r) => client.serverReflectionInfo(r),
    [
      {
        host: "",
        messageRequest: { case: "fileByFilename" as const, value: "cube/v1/nope.proto" },
      },
      {
        host: "",
        messageRequest: {
          case: "fileContainingExtension" as const,
          value: { containingType: "cube.v1.Task", extensionNumber: 1000 },
        },
      },
      {
        host: "",
        messageRequest: { case: "allExtensionNumbersOfType" as const, value: "cube.v1.Task" },
      },
      { host: "", messageRequest: { case: undefined } },
    ],
  )) as { messageResponse: { case: string; value: Record<string, unknown> } }[];
  t.deepEqual(
    responses.map((r) => r.messageResponse.case),
    ["errorResponse", "errorResponse", "allExtensionNumbersResponse", "errorResponse"],
  );
  t.is(responses[0]?.messageResponse.value.errorCode, Code.NotFound);
  t.is(responses[1]?.messageResponse.value.errorCode, Code.NotFound);
  t.deepEqual(responses[2]?.messageResponse.value.extensionNumber, []);
  t.is(responses[3]?.messageResponse.value.errorCode, Code.InvalidArgument);
});
