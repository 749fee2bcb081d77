/**
 * Revoking a token ends the streams it opened, at once, with UNAUTHENTICATED: watches opened
 * with a read token, and a worker's Connect stream opened with its credential (the worker is
 * then DISCONNECTED as after any lost stream, and gets nothing more). A token's streams also
 * end when it expires. Through the manager harness with the real authorization gate and interceptor.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import { JobService } from "../gen/cube/v1/job_service_pb.js";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { Role, TokenService } from "../gen/cube/v1/token_service_pb.js";
import { WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { AssignmentAction, WorkerService } from "../gen/cube/v1/worker_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { authorization } from "../manager/api/authorization.js";
import { managerRoutes } from "../manager/api/routes.js";
import { FakeClock } from "./fake-clock.js";
import { eventually, FakeWorker, harness, spec } from "./manager-harness.js";

/** A manager whose calls go through the authorization gate and interceptor; `as(secret)` calls as a token. */
async function setup(t: ExecutionContext) {
  const clock = new FakeClock();
  const h = await harness(t, { clock, heartbeatTimeoutMs: 3_600_000, downGraceMs: 60_000 });
  const auth = authorization(h.cp.tokens, h.cp.clock, createLogger("manager", "silent"));
  const as = (secret: string): Transport => {
    const bearer: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${secret}`);
      return next(req);
    };
    return createRouterTransport(managerRoutes(h.cp), {
      router: { requestGate: auth.gate, interceptors: [auth.interceptor] },
      transport: { interceptors: [bearer] },
    });
  };
  const token = (role: Role, ttlMs?: number, workerId?: string) =>
    h.cp.tokens.create(
      Role[role] as string,
      role,
      ttlMs === undefined ? undefined : durationFromMs(ttlMs),
      clock.now(),
      workerId,
    );
  const admin = as(token(Role.ADMIN).secret);
  return { clock, h, as, token, admin };
}

/** Reads a server stream in the background: what arrived, and how it ended. */
function consume<T>(t: ExecutionContext, stream: (signal: AbortSignal) => AsyncIterable<T>) {
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const got: T[] = [];
  const state: { ended?: { error?: ConnectError } } = {};
  void (async () => {
    try {
      for await (const m of stream(abort.signal)) got.push(m);
      state.ended = {};
    } catch (error) {
      state.ended = { error: ConnectError.from(error) };
    }
  })();
  const endedWith = () =>
    eventually(() => {
      if (!state.ended) throw new Error("still open");
      return state.ended.error;
    }, 1000);
  return { got, state, endedWith };
}

async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 30));
}

test("watches opened with a read token end with UNAUTHENTICATED right after RevokeToken; another token's go on", async (t) => {
  const { h, as, token, admin } = await setup(t);
  const reader = token(Role.READ);
  const other = token(Role.READ);
  const readerTransport = as(reader.secret);
  const tasks = createClient(TaskService, readerTransport);
  const jobs = createClient(JobService, readerTransport);
  const watch = consume(t, (signal) => tasks.watchTasks({}, { signal }));
  const watchJobs = consume(t, (signal) => jobs.watchJobs({}, { signal }));
  const watchOther = consume(t, (signal) =>
    createClient(TaskService, as(other.secret)).watchTasks({}, { signal }),
  );
  await settle(); // subscribed: a watch from revision 0 shows what comes next
  await createClient(TaskService, admin).runTask({ id: "a", spec: spec() });
  await eventually(() => {
    if (watch.got.length === 0 || watchOther.got.length === 0) throw new Error("no event yet");
  });

  await createClient(TokenService, admin).revokeToken({ id: reader.record.token?.id ?? "" });
  for (const w of [watch, watchJobs]) {
    const error = await w.endedWith();
    t.is(error?.code, Code.Unauthenticated);
    t.regex(error?.rawMessage ?? "", /^token [0-9a-f]+ revoked$/);
  }
  // Nothing more reaches the revoked token's watch; the other one still streams.
  const seen = watch.got.length;
  await createClient(TaskService, admin).runTask({ id: "b", spec: spec() });
  await eventually(() => {
    if (!watchOther.got.some((e) => e.event?.task?.id === "b")) throw new Error("no b yet");
  });
  t.is(watch.got.length, seen);
  t.is(watchOther.state.ended, undefined, "another token's watch is not touched");
  // And it may not open a new one.
  const again = consume(t, (signal) => tasks.watchTasks({}, { signal }));
  t.is((await again.endedWith())?.code, Code.Unauthenticated);
  t.is(h.cp.tokens.list().find((x) => x.id === reader.record.token?.id)?.revoked, true);
});

test("a worker's stream ends with UNAUTHENTICATED once its credential is revoked; it is DISCONNECTED and gets no more assignments", async (t) => {
  const { h, as, token, admin } = await setup(t);
  const credential = token(Role.WORKER, undefined, "w1");
  const w1 = new FakeWorker("w1");
  await w1.connect(as(credential.secret));
  const operator = createClient(TaskService, admin);
  await operator.runTask({ id: "a", spec: spec({ secretEnv: { K: "v" } }) });
  await w1.waitFor((a) => a.action === AssignmentAction.RUN && a.task?.id === "a");

  await createClient(TokenService, admin).revokeToken({ id: credential.record.token?.id ?? "" });
  const ended = await eventually(() => {
    if (!w1.ended) throw new Error("stream still open");
    return w1.ended;
  }, 1000);
  const error = ConnectError.from(ended.error);
  t.is(error.code, Code.Unauthenticated);
  t.regex(error.rawMessage, /revoked/);
  // The normal path of a lost stream: DISCONNECTED, its tasks UNKNOWN.
  await eventually(() => {
    if (h.cp.workers.get("w1")?.status !== WorkerStatus.DISCONNECTED) throw new Error("not yet");
  });
  t.is(h.cp.workers.get("w1")?.connection, undefined);
  t.is(h.cp.tasks.get("a")?.task.state, TaskState.UNKNOWN);
  const seen = w1.assignments.length;
  await operator.runTask({ id: "b", spec: spec({ secretEnv: { K: "v" } }) });
  await settle();
  t.is(w1.assignments.length, seen, "no RUN (nor its secrets) after the revoke");
  t.is(h.cp.tasks.get("b")?.task.state, TaskState.PENDING);
  // Nor may it come back with that credential.
  const back = new FakeWorker("w1", { seq: 1n });
  await t.throwsAsync(back.connect(as(credential.secret)));
});

test("a token's streams end with UNAUTHENTICATED when it expires, by the manager's clock", async (t) => {
  const { clock, as, token } = await setup(t);
  const shortLived = token(Role.READ, 60_000);
  const lasting = token(Role.READ);
  const short = consume(t, (signal) =>
    createClient(TaskService, as(shortLived.secret)).watchTasks({}, { signal }),
  );
  const long = consume(t, (signal) =>
    createClient(WorkerService, as(lasting.secret)).watchWorkers({}, { signal }),
  );
  await settle();
  clock.advance(59_000);
  await settle();
  t.is(short.state.ended, undefined, "still valid");
  clock.advance(1_000);
  const error = await short.endedWith();
  t.is(error?.code, Code.Unauthenticated);
  t.regex(error?.rawMessage ?? "", /^token [0-9a-f]+ expired$/);
  t.is(long.state.ended, undefined, "a token without expiry is not touched");
});

test("a worker's stream ends when its credential expires", async (t) => {
  const { clock, h, as, token } = await setup(t);
  const credential = token(Role.WORKER, 10_000, "w1");
  const w1 = new FakeWorker("w1");
  await w1.connect(as(credential.secret));
  clock.advance(10_000);
  const ended = await eventually(() => {
    if (!w1.ended) throw new Error("stream still open");
    return w1.ended;
  }, 1000);
  t.is(ConnectError.from(ended.error).code, Code.Unauthenticated);
  await eventually(() => {
    if (h.cp.workers.get("w1")?.status !== WorkerStatus.DISCONNECTED) throw new Error("not yet");
  });
});
