import { Code, ConnectError } from "@connectrpc/connect";
import test from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { LogStream, TaskService } from "../gen/cube/v1/task_service_pb.js";
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

async function read(h: Harness, id: string): Promise<string[] | ConnectError> {
  const out: string[] = [];
  try {
    for await (const chunk of h.tasks.taskLogs({ id, tail: 5, follow: true })) {
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
