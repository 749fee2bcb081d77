/**
 * RunTasks against a real manager process over a real socket, with its LevelDB store: a
 * batch answered is durable (it survives kill -9 right after the answer), and a rejected
 * batch leaves nothing behind.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { allTasks, HTTP_IMAGE, tempDir } from "./fixtures.js";
import { Cluster } from "./manager-process.js";

test("a RunTasks batch of 5000 answered over a socket survives kill -9; a bad one stores nothing", async (t) => {
  const cluster = new Cluster(t, await tempDir(t));
  const manager = await cluster.startManager();
  const client = createClient(
    TaskService,
    grpcTransport(manager.address, { token: manager.token }),
  );
  const requests = Array.from({ length: 5000 }, (_, i) => ({
    id: `bulk-${i}`,
    spec: { name: `bulk-${i}`, image: HTTP_IMAGE, labels: { test: "run-tasks" } },
  }));

  const bad = await client
    .runTasks({ requests: [...requests.slice(0, 9), { id: "x", spec: { image: "a b" } }] })
    .catch((e) => ConnectError.from(e));
  t.is((bad as ConnectError).code, Code.InvalidArgument);
  t.regex((bad as ConnectError).rawMessage, /^requests\[9\]\.spec\.image: /);

  const { tasks } = await client.runTasks({ requests });
  await manager.kill9();
  t.deepEqual(
    tasks.map((x) => x.id),
    requests.map((r) => r.id),
  );

  const restarted = await cluster.startManager();
  const again = createClient(
    TaskService,
    grpcTransport(restarted.address, { token: restarted.token }),
  );
  const stored = await allTasks(again);
  t.deepEqual(
    stored.map((x) => x.id),
    requests.map((r) => r.id),
    "all of the answered batch, in order, and nothing of the rejected one",
  );
  t.true(stored.every((x) => x.state === TaskState.PENDING));
  const retried = await again.runTasks({ requests });
  t.deepEqual(
    retried.tasks.map((x) => x.revision),
    tasks.map((x) => x.revision),
    "a retry after the restart returns the stored tasks",
  );
});
