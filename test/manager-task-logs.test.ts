import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import test from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { LogStream, TaskService } from "../gen/cube/v1/task_service_pb.js";
import { formatRfc3339Nano } from "../lib/log-time.js";
import { startServer } from "../lib/rpc/server.js";
import { eventually, FakeWorker, type Harness, harness, spec } from "./manager-harness.js";

/** A stand-in for a worker's own TaskService: TaskLogs echoes what it was asked. */
async function workerServer(t: { teardown(fn: () => unknown): void }) {
  const server = await startServer({
    listen: "127.0.0.1:0",
    files: [],
    routes: (router) =>
      router.service(TaskService, {
        async *taskLogs(req) {
          const enc = new TextEncoder();
          yield { data: enc.encode(`logs of ${req.id}\n`), stream: LogStream.STDOUT };
          yield {
            data: enc.encode(`tail=${req.tail} follow=${req.follow}\n`),
            stream: LogStream.STDERR,
          };
          if (req.since) {
            yield {
              data: enc.encode(`since=${formatRfc3339Nano(req.since)}\n`),
              stream: LogStream.STDOUT,
              time: req.since,
            };
          }
        },
      }),
  });
  t.teardown(() => server.close());
  return server;
}

async function runningTask(h: Harness): Promise<string> {
  const { task } = await h.tasks.runTask({ spec: spec() });
  const id = task?.id ?? "";
  await eventually(async () => {
    if ((await h.tasks.getTask({ id })).task?.state !== TaskState.RUNNING) throw new Error("no");
  });
  return id;
}

async function read(h: Harness, id: string, since?: Timestamp): Promise<string[] | ConnectError> {
  const out: string[] = [];
  try {
    for await (const chunk of h.tasks.taskLogs({ id, tail: 5, follow: true, since })) {
      out.push(`${LogStream[chunk.stream]}:${new TextDecoder().decode(chunk.data)}`);
    }
  } catch (error) {
    return ConnectError.from(error);
  }
  return out;
}

test("TaskLogs is proxied from the worker that runs the task", async (t) => {
  const h = await harness(t);
  const server = await workerServer(t);
  await new FakeWorker("w1", { address: server.address }).connect(h.transport);
  const id = await runningTask(h);
  t.deepEqual(await read(h, id), [`STDOUT:logs of ${id}\n`, "STDERR:tail=5 follow=true\n"]);
});

test("TaskLogs of a task without a container is FAILED_PRECONDITION", async (t) => {
  const h = await harness(t);
  const { task } = await h.tasks.runTask({ spec: spec() });
  const e = await read(h, task?.id ?? "");
  t.is((e as ConnectError).code, Code.FailedPrecondition);
  t.is(((await read(h, "nope")) as ConnectError).code, Code.NotFound);
});

test("TaskLogs through an unreachable worker is UNAVAILABLE, naming the worker", async (t) => {
  const h = await harness(t);
  const server = await workerServer(t);
  await new FakeWorker("w1", { address: server.address }).connect(h.transport);
  const id = await runningTask(h);
  await server.close();
  const e = (await read(h, id)) as ConnectError;
  t.is(e.code, Code.Unavailable);
  t.regex(e.rawMessage, new RegExp(`worker w1 at ${server.address} is unreachable`));
});

test("TaskLogs passes since on to the worker, and the chunks' times back", async (t) => {
  const h = await harness(t);
  const server = await workerServer(t);
  await new FakeWorker("w1", { address: server.address }).connect(h.transport);
  const id = await runningTask(h);
  const since: Timestamp = {
    $typeName: "google.protobuf.Timestamp",
    seconds: 1796587200n,
    nanos: 123456789,
  };
  t.deepEqual(await read(h, id, since), [
    `STDOUT:logs of ${id}\n`,
    "STDERR:tail=5 follow=true\n",
    "STDOUT:since=2026-12-06T20:00:00.123456789Z\n",
  ]);
  const times: (Timestamp | undefined)[] = [];
  for await (const chunk of h.tasks.taskLogs({ id, since })) times.push(chunk.time);
  t.deepEqual(times.at(-1), since);
});

test("TaskLogs with a since before 1970 or with bad nanos is INVALID_ARGUMENT from the manager, which dials no worker", async (t) => {
  const h = await harness(t);
  // No worker at all: the manager answers before it would look for one.
  const ts = (seconds: bigint, nanos = 0): Timestamp => ({
    $typeName: "google.protobuf.Timestamp",
    seconds,
    nanos,
  });
  const { task } = await h.tasks.runTask({ spec: spec() });
  const negative = (await read(h, task?.id ?? "", ts(-5n))) as ConnectError;
  t.is(negative.code, Code.InvalidArgument);
  t.is(
    negative.rawMessage,
    "since: -5 s is before 1970-01-01T00:00:00Z; give a time at or after it",
  );
  const nanos = (await read(h, task?.id ?? "", ts(5n, -1))) as ConnectError;
  t.is(nanos.code, Code.InvalidArgument);
  t.regex(nanos.rawMessage, /^since: nanos must be 0 to 999999999/);
});
