/**
 * Identity on the worker stream (issue 15, point 1) with real processes: a worker trades the
 * join token for a credential bound to its id, and a stream speaks only for that worker. A
 * rogue with no token, with the join token itself, or with a credential of its own trying to
 * register as the real worker is refused, and the real worker keeps its tasks.
 */
import { readFile } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { TokenService } from "../gen/cube/v1/token_service_pb.js";
import { WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { WorkerService } from "../gen/cube/v1/worker_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { readToken } from "../manager/index.js";
import { WorkerIdentity } from "../worker/stream/join.js";
import { HTTP_IMAGE, requireDocker, tempDir } from "./fixtures.js";
import { eventually } from "./manager-harness.js";
import { Cluster } from "./manager-process.js";

/** Opens a worker stream with `token` that registers as `workerId`; resolves with its end. */
async function streamAs(address: string, token: string | undefined, workerId: string) {
  const workers = createClient(WorkerService, grpcTransport(address, { token }));
  const answers = workers.connect(
    (async function* () {
      yield {
        message: {
          case: "register" as const,
          value: { workerId, name: "rogue", acceptsBatch: true },
        },
      };
      await new Promise((resolve) => setTimeout(resolve, 2000));
    })(),
  );
  try {
    for await (const answer of answers) {
      if (answer.message.case === "registered") return "registered";
    }
    return "ended";
  } catch (error) {
    return ConnectError.from(error);
  }
}

test("a stream speaks only for the worker its credential names; the real worker keeps its tasks", async (t) => {
  await requireDocker();
  const dir = await tempDir(t);
  const cluster = new Cluster(t, dir);
  const manager = await cluster.startManager();
  const real = await cluster.startWorker("real");
  const transport = grpcTransport(manager.address, { token: manager.token });
  const tasks = createClient(TaskService, transport);
  const workers = createClient(WorkerService, transport);
  await tasks.runTask({ id: "keep-me", spec: { image: HTTP_IMAGE } });
  await eventually(async () => {
    const { task: now } = await tasks.getTask({ id: "keep-me" });
    if (now?.state !== TaskState.RUNNING) throw new Error(`still ${now?.state}`);
  }, 30_000);
  // The real worker traded the join token for a credential of its own, kept on disk.
  const credential = (await readFile(`${dir}/real/credential`, "utf8")).trim();
  const joinToken = await readToken(`${dir}/manager`, "worker");
  t.not(credential, joinToken);

  const noToken = await streamAs(manager.address, undefined, real.id);
  t.is((noToken as ConnectError).code, Code.Unauthenticated);
  const withJoinToken = await streamAs(manager.address, joinToken, real.id);
  t.is((withJoinToken as ConnectError).code, Code.PermissionDenied);
  t.regex((withJoinToken as ConnectError).rawMessage, /joins first/);
  // Joining under the real worker's id is refused: that id has a credential.
  const tokens = createClient(TokenService, grpcTransport(manager.address, { token: joinToken }));
  const takeover = await tokens
    .joinWorker({ workerId: real.id })
    .catch((e) => ConnectError.from(e));
  t.is((takeover as ConnectError).code, Code.PermissionDenied);
  // A rogue may join under a new id (that is what join tokens are for)…
  const { secret: rogue } = await tokens.joinWorker({ workerId: "rogue-1" });
  // …but its stream may not register as the real worker.
  const impostor = await streamAs(manager.address, rogue, real.id);
  t.is((impostor as ConnectError).code, Code.PermissionDenied);
  t.regex((impostor as ConnectError).rawMessage, /may not register as/);
  // A read or admin token is no worker credential either.
  const admin = await streamAs(manager.address, manager.token, real.id);
  t.is((admin as ConnectError).code, Code.PermissionDenied);

  // The real worker stayed READY, its task RUNNING on it, never moved.
  const { worker } = await workers.getWorker({ id: real.id });
  t.is(worker?.status, WorkerStatus.READY);
  const { task: after } = await tasks.getTask({ id: "keep-me" });
  t.is(after?.state, TaskState.RUNNING);
  t.is(after?.workerId, real.id);
  t.is(after?.generation, 1n, "never restarted or moved");
  // And its own credential works for it alone, as before.
  t.is(await streamAs(manager.address, rogue, "rogue-1"), "registered");
});

/** The error of a first dial (a join) to `manager` by a plaintext worker with a join token. */
async function joinError(t: ExecutionContext, manager: string): Promise<string> {
  const identity = await WorkerIdentity.open({
    manager,
    dataDir: await tempDir(t),
    workerId: "w-join",
    token: "a-join-secret",
    logger: createLogger("test", "silent"),
  });
  const error = await t.throwsAsync(identity.dial());
  return error?.message ?? "";
}

test("a join that finds nobody listening says so, with no TLS hint; a server that hangs up gives the hint", async (t) => {
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const { port } = closed.address() as AddressInfo;
  await new Promise((resolve) => closed.close(resolve));
  const refused = await joinError(t, `127.0.0.1:${port}`);
  t.regex(refused, /ECONNREFUSED/);
  t.notRegex(refused, /serves TLS/);

  // What a TLS manager does to a plaintext client: closes the connection without a word.
  const hangUp = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => hangUp.listen(0, "127.0.0.1", resolve));
  t.teardown(() => hangUp.close());
  const hint = await joinError(t, `127.0.0.1:${(hangUp.address() as AddressInfo).port}`);
  t.regex(hint, /if the manager serves TLS, give a join token with its CA's digest/);
});
