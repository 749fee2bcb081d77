/**
 * A manager whose disk fills up (a real tmpfs, mounted by the test as root): the first
 * failed write turns grpc.health.v1 NOT_SERVING, so probes and supervisors see it down.
 */
import { execFile } from "node:child_process";
import { open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import test from "ava";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
} from "../gen/grpc/health/v1/health_pb.js";
import { createLogger } from "../lib/logger.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { startManager } from "../manager/index.js";
import { tempDir } from "./fixtures.js";

const run = promisify(execFile);

test("a store write that fails (disk full) turns the manager's health NOT_SERVING", async (t) => {
  const dir = await tempDir(t);
  await run("mount", ["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", dir]);
  t.teardown(() => run("umount", ["-l", dir]).catch(() => undefined));
  const m = await startManager({
    listen: "127.0.0.1:0",
    dataDir: dir,
    auth: false,
    logger: createLogger("manager", "silent"),
  });
  t.teardown(() => m.close());
  const transport = grpcTransport(`http://${m.address}`);
  const health = createClient(Health, transport);
  const tasks = createClient(TaskService, transport);
  t.is((await health.check({ service: "" })).status, Status.SERVING);
  t.is((await health.check({ service: TaskService.typeName })).status, Status.SERVING);

  // Fill what is left of the tmpfs, then write until the store fails.
  const filler = await open(join(dir, "filler"), "w");
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) await filler.write(chunk);
  } catch (error) {
    t.is((error as NodeJS.ErrnoException).code, "ENOSPC");
  } finally {
    await filler.close();
  }
  let refused: unknown;
  for (let i = 0; i < 50 && refused === undefined; i++) {
    await tasks
      .runTask({ spec: { image: "cube/httpd:local", env: { PAD: "x".repeat(30_000) } } })
      .catch((error: unknown) => {
        refused = error;
      });
  }
  t.regex(String(refused), /store write failed|cannot write its store|No space left/);
  t.is((await health.check({ service: "" })).status, Status.NOT_SERVING);
  t.is(
    (await health.check({ service: TaskService.typeName })).status,
    Status.NOT_SERVING,
    "a probe naming the service sees it down too",
  );
  t.true((await readdir(dir)).includes("CURRENT"));
});
