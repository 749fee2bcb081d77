/**
 * cube's client transport (lib/client.ts, used by the CLI) against a manager process that
 * stalls: a stop-the-world pause, a busy event loop or a VM that lost its CPU must not fail
 * calls that the manager answers once it runs again.
 */
import { createClient } from "@connectrpc/connect";
import test from "ava";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { startManager } from "../manager/index.js";
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
  const client = createClient(
    TaskService,
    grpcTransport(manager.address, { token: manager.token }),
  );
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

test("idle pings racing a server's GOAWAY do not crash the client (connect-node ≥ 2.3)", async (t) => {
  // connect-node 2.1/2.2 pinged a session the server had just closed and threw
  // ERR_HTTP2_INVALID_SESSION from a timer (connect-es #1795), or raised a GOAWAY error
  // after its listeners were gone (#1768): either ended the process. cube's client now
  // pings idle connections, so it relies on the fix.
  const crashes: unknown[] = [];
  const onCrash = (error: unknown) => crashes.push(error);
  process.on("uncaughtException", onCrash);
  t.teardown(() => {
    process.off("uncaughtException", onCrash);
  });
  const dir = await tempDir(t);
  const server = await startManager({
    dataDir: `${dir}/m`,
    listen: "127.0.0.1:0",
    logger: createLogger("manager", "silent"),
  });
  const client = createClient(
    TaskService,
    grpcTransport(server.address, { pingIntervalMs: 20, token: server.adminToken }),
  );
  for (let round = 0; round < 5; round++) {
    await client.listTasks({});
    // Idle long enough for pings to be armed, then the server goes away mid-ping.
    await new Promise((resolve) => setTimeout(resolve, 60));
    if (round === 4) await server.close();
  }
  // Calls after the GOAWAY see a clean UNAVAILABLE, and the ping timers fire a few more times.
  const error = await t.throwsAsync(client.listTasks({}));
  t.regex(String(error?.message), /unavailable|ECONNREFUSED|canceled/i);
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.deepEqual(crashes, []);
});
