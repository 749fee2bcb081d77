import type Docker from "dockerode";
import { LABEL_WORKER } from "./container-spec.js";
import { LABEL_SANDBOX } from "./sandbox-pool.js";

/**
 * Force-removes every container carrying `label` ("key" or "key=value"), running or not,
 * and returns how many there were. A container that vanishes meanwhile is not an error.
 * Used to clear out a worker's containers for good (tests, benchmarks).
 */
export async function removeLabelled(docker: Docker, label: string): Promise<number> {
  const list = await docker.listContainers({ all: true, filters: { label: [label] } });
  await removeContainers(
    docker,
    list.map((c) => c.Id),
  );
  return list.length;
}

/** Force-removes the containers `ids`, all at once; one that is already gone is not an error. */
export async function removeContainers(docker: Docker, ids: readonly string[]): Promise<void> {
  await Promise.all(
    ids.map((id) =>
      docker
        .getContainer(id)
        .remove({ force: true, v: true })
        .catch(() => undefined),
    ),
  );
}

/**
 * Force-removes every container of worker `workerId`, its tasks' and its network sandboxes'
 * (worker/docker/sandbox-pool.ts), and returns how many of its tasks' there were.
 */
export async function removeWorkerContainers(docker: Docker, workerId: string): Promise<number> {
  const removed = await removeLabelled(docker, `${LABEL_WORKER}=${workerId}`);
  await removeLabelled(docker, `${LABEL_SANDBOX}=${workerId}`);
  return removed;
}
