import type Docker from "dockerode";

/**
 * Force-removes every container carrying `label` ("key" or "key=value"), running or not,
 * and returns how many there were. A container that vanishes meanwhile is not an error.
 * Used to clear out a worker's containers for good (tests, benchmarks).
 */
export async function removeLabelled(docker: Docker, label: string): Promise<number> {
  const list = await docker.listContainers({ all: true, filters: { label: [label] } });
  await Promise.all(
    list.map((c) =>
      docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => undefined),
    ),
  );
  return list.length;
}
