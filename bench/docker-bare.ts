/**
 * Docker without cube: the baselines. Containers are made from the very create body the
 * worker's Docker driver sends (worker/docker-container-spec.ts), so "bare" differs from
 * cube only by what cube adds around it.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type Docker from "dockerode";
import { TaskSpecSchema } from "../gen/cube/v1/task_pb.js";
import { createOptions, publishedPorts } from "../worker/docker/container-spec.js";
import { removeContainers } from "../worker/docker/remove-labelled.js";

/** A container started the bare way. */
export interface BareContainer {
  readonly id: string;
  /** The host port published for the first container port. */
  readonly hostPort: number;
}

/**
 * What the worker's driver does for a RUN, minus cube: create, start, inspect (for the
 * published port). `restartAlways` adds Docker's own restart policy (the recovery baseline).
 */
export async function bareRun(
  docker: Docker,
  name: string,
  spec: MessageInitShape<typeof TaskSpecSchema>,
  options: { restartAlways?: boolean } = {},
): Promise<BareContainer> {
  const body = createOptions({
    taskId: name,
    generation: 1n,
    workerId: "bench-bare",
    spec: create(TaskSpecSchema, spec),
  });
  if (options.restartAlways && body.HostConfig) {
    body.HostConfig.RestartPolicy = { Name: "always" };
  }
  const container = await docker.createContainer(body);
  await container.start();
  const inspect = await container.inspect();
  const ports = publishedPorts(
    inspect.NetworkSettings.Ports as Record<string, { HostIp: string; HostPort: string }[] | null>,
  );
  return { id: inspect.Id, hostPort: ports[0]?.hostPort ?? 0 };
}

/** The main process of a running container, as the host sees it (0 when not running). */
export async function containerPid(docker: Docker, id: string): Promise<number> {
  const inspect = await docker.getContainer(id).inspect();
  return inspect.State.Running ? inspect.State.Pid : 0;
}

/**
 * Bare create + start + inspect of `n` containers of `spec` at once, named `${prefix}-${k}`,
 * force-removed afterwards: the ms until all of them ran. The engine's own time for a move
 * of `n` tasks, the baseline a cube figure is set against.
 */
export async function bareParallelStart(
  docker: Docker,
  prefix: string,
  n: number,
  spec: MessageInitShape<typeof TaskSpecSchema>,
): Promise<number> {
  const t0 = Date.now();
  const started = await Promise.all(
    Array.from({ length: n }, (_, k) => bareRun(docker, `${prefix}-${k}`, spec)),
  );
  const ms = Date.now() - t0;
  await removeContainers(
    docker,
    started.map((c) => c.id),
  );
  return ms;
}
