/**
 * A worker in this process on the shared Docker engine, for tests that pair it with a
 * manager started in the test (startTestManager, auth off): connected over real sockets and
 * READY when returned; closed, and its containers removed, when the test ends.
 */
import { type Client, createClient } from "@connectrpc/connect";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { WorkerService } from "../gen/cube/v1/worker_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { startWorker, type WorkerHandle } from "../worker/index.js";
import { removeContainers, TEST_SANDBOXES, tempDir } from "./fixtures.js";
import { eventually } from "./manager-harness.js";

export interface DockerWorker {
  readonly worker: WorkerHandle;
  readonly tasks: Client<typeof TaskService>;
  readonly workers: Client<typeof WorkerService>;
}

export async function dockerWorker(
  t: { teardown(fn: () => unknown): void },
  manager: string,
): Promise<DockerWorker> {
  const worker = await startWorker({
    ...TEST_SANDBOXES,
    manager,
    listen: "127.0.0.1:0",
    dataDir: await tempDir(t),
    logger: createLogger("worker", process.env.CUBE_LOG_LEVEL ?? "silent"),
  });
  t.teardown(async () => {
    await worker.close();
    await removeContainers(`cube.worker=${worker.id}`);
  });
  const tasks = createClient(TaskService, grpcTransport(manager));
  const workers = createClient(WorkerService, grpcTransport(manager));
  await eventually(async () => {
    const { workers: list } = await workers.listWorkers({});
    if (list[0]?.status !== WorkerStatus.READY) throw new Error("no worker yet");
  }, 20_000);
  return { worker, tasks, workers };
}
