/**
 * cube's client transport (lib/client.ts, used by the CLI) against a manager process that
 * stalls: a stop-the-world pause, a busy event loop or a VM that lost its CPU must not fail
 * calls that the manager answers once it runs again.
 */
import { createClient } from "@connectrpc/connect";
import test from "ava";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { grpcTransport } from "../lib/client.js";
import { tempDir } from "./fixtures.js";
import { spawnCube } from "./manager-process.js";

const STALL_MS = 3500;

test("a call waits out a manager stalled for 3.5 s (SIGSTOP … SIGCONT) instead of failing on a ping", async (t) => {
  const dir = await tempDir(t);
  const manager = await spawnCube(t, "manager/main.ts", {
    CUBE_DATA_DIR: `${dir}/manager`,
    CUBE_LISTEN: "127.0.0.1:0",
    CUBE_LOG_LEVEL: "warn",
  });
  const client = createClient(TaskService, grpcTransport(manager.address));
  await client.listTasks({}); // the connection is up
  manager.child.kill("SIGSTOP");
  const resume = setTimeout(() => manager.child.kill("SIGCONT"), STALL_MS);
  t.teardown(() => {
    clearTimeout(resume);
    manager.child.kill("SIGCONT");
  });
  const began = Date.now();
  const answer = await client.listTasks({});
  const took = Date.now() - began;
  t.log(`answered after ${took} ms`);
  t.deepEqual(answer.tasks, []);
  t.true(took >= STALL_MS - 100, "the call did wait for the stalled manager");
});
