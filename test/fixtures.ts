/**
 * The one fixtures module of the test suite: test objects, the Docker test bed, temp
 * directories and clean-up. Integration tests never skip when Docker is missing: they
 * fail, naming the set-up command.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Client, ServiceImpl } from "@connectrpc/connect";
import Docker from "dockerode";
import type { Task } from "../gen/cube/v1/task_pb.js";
import { file_cube_v1_task_service, TaskService } from "../gen/cube/v1/task_service_pb.js";
import { createLogger, type Logger } from "../lib/logger.js";
import { type Server, type ServerLimits, startServer } from "../lib/rpc/server.js";
import { type AuthOptions, authorization } from "../manager/api/authorization.js";
import { MANAGER_FILES, managerRoutes } from "../manager/api/routes.js";
import type { ControlPlane } from "../manager/core/control-plane.js";
import { type ManagerHandle, type ManagerOptions, startManager } from "../manager/index.js";
import { memoryNumbers } from "../manager/scheduler/numbers.js";
import { removeLabelled, removeWorkerContainers } from "../worker/docker/remove-labelled.js";

/** The local HTTP image built by `npm run setup` (busybox httpd on port 80, /health answers 200). */
export const HTTP_IMAGE = "cube/httpd:local";

/** A Docker client for the local engine (DOCKER_HOST is honoured by dockerode). */
export const docker = new Docker();

/** Fails loudly when no Docker engine answers or the local image is missing. */
export async function requireDocker(): Promise<Docker> {
  try {
    await docker.ping();
  } catch (error) {
    throw new Error(
      `no Docker engine answers (${(error as Error).message}): run \`npm run setup\` first, as root`,
    );
  }
  try {
    await docker.getImage(HTTP_IMAGE).inspect();
  } catch {
    throw new Error(`image ${HTTP_IMAGE} is missing: run \`npm run setup\` first`);
  }
  return docker;
}

/**
 * GETs a URL served by a test container, bounded: each attempt gives up after 3 s and
 * failures are retried for up to 20 s. Docker binds the host port before the process inside
 * listens, and a fresh veth can drop the proxy's first SYN, which without a bound leaves a
 * plain fetch hanging for minutes; here it fails with the last error instead.
 */
export async function fetchContainer(url: string, deadlineMs = 20_000): Promise<Response> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(3000) });
      await response.clone().arrayBuffer();
      return response;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`GET ${url}: ${(error as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** A logger at warn level whose lines are kept, to check what a start warned about. */
export async function warnings() {
  const lines: string[] = [];
  const { pino } = await import("pino");
  const logger = pino({ level: "warn" }, {
    write: (line: string) => lines.push(line),
  } as unknown as NodeJS.WritableStream);
  return { lines, logger };
}

/**
 * What test workers are started with: no warm network sandboxes. The pool's background starts
 * (4 per worker, dozens of workers in a run) would load the one engine every timing-bound test
 * shares. The product's default runs in test/sandbox-pool.test.ts and in the fault suite
 * (`npm run faults -- --quick` in CI); worker processes get the same through the
 * CUBE_WARM_SANDBOXES=0 of package.json's ava settings.
 */
export const TEST_SANDBOXES = { warmSandboxes: 0 } as const;

/** A fresh temporary directory, removed when the test ends (`t.teardown`). */
export async function tempDir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cube-test-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Force-removes every container carrying `label` (e.g. "cube.worker=abc"); returns how many.
 * For a worker's label, its network sandboxes go too (not counted).
 */
export async function removeContainers(label: string): Promise<number> {
  const worker = /^cube\.worker=(.+)$/.exec(label)?.[1];
  if (worker !== undefined) return removeWorkerContainers(docker, worker);
  return removeLabelled(docker, label);
}

type NodeView = import("../manager/scheduler/types.js").NodeView;
type Amounts = import("../manager/scheduler/types.js").Amounts;

/** Overrides for {@link nodeView}: any field, and capacity/allocated field by field. */
export type NodeViewOverrides = Omit<Partial<NodeView>, "capacity" | "allocated"> & {
  capacity?: Partial<Amounts>;
  allocated?: Partial<Amounts>;
};

/**
 * A scheduler's view of one worker for pure tests: READY, 4 cores, 8 GiB memory, 100 GiB
 * disk, nothing allocated, no tasks, no measurements; `name` defaults to the id.
 */
export function nodeView(overrides: NodeViewOverrides = {}): NodeView {
  const { capacity, allocated, ...rest } = overrides;
  const id = rest.id ?? "node";
  return {
    id,
    name: id,
    ready: true,
    taskCount: 0,
    labels: {},
    ...rest,
    capacity: { cpu: 4, memoryBytes: 8n * 1024n ** 3n, diskBytes: 100n * 1024n ** 3n, ...capacity },
    allocated: { cpu: 0, memoryBytes: 0n, diskBytes: 0n, ...allocated },
  };
}

/** `node` with its memory amounts also as numbers, as the manager's worker table keeps them. */
export function withMemoryNumbers(node: NodeView): NodeView {
  return { ...node, memory: memoryNumbers(node.capacity.memoryBytes, node.allocated.memoryBytes) };
}

/** Every task the manager behind `client` lists, reading all pages. */
export async function allTasks(client: Client<typeof TaskService>): Promise<Task[]> {
  const out: Task[] = [];
  let token = "";
  do {
    const page = await client.listTasks({ pageSize: 1000, pageToken: token });
    out.push(...page.tasks);
    token = page.nextPageToken;
  } while (token);
  return out;
}

/**
 * A real server on 127.0.0.1:0 offering TaskService with the given methods (the others
 * answer UNIMPLEMENTED), plus health and reflection; closed when the test ends.
 */
export async function serveTaskService(
  t: { teardown(fn: () => unknown): void },
  methods: Partial<ServiceImpl<typeof TaskService>>,
): Promise<Server> {
  const server = await startServer({
    listen: "127.0.0.1:0",
    files: [file_cube_v1_task_service],
    routes(router) {
      router.service(TaskService, methods);
    },
  });
  t.teardown(() => server.close());
  return server;
}

/**
 * A real server on 127.0.0.1:0 serving `cp`'s routes behind the manager's authorization (its
 * gate and interceptor, as startManager has them, with `o.auth`), closed at teardown.
 */
export async function serveAuthorized(
  t: { teardown(fn: () => unknown): void },
  cp: ControlPlane,
  o: { auth?: AuthOptions; limits?: Partial<ServerLimits>; logger?: Logger } = {},
): Promise<Server> {
  const auth = authorization(cp.tokens, cp.clock, createLogger("manager", "silent"), o.auth);
  const server = await startServer({
    listen: "127.0.0.1:0",
    routes: managerRoutes(cp),
    files: MANAGER_FILES,
    gates: [auth.gate],
    interceptors: [auth.interceptor],
    limits: o.limits,
    logger: o.logger,
  });
  t.teardown(() => server.close());
  return server;
}

/**
 * A real manager on 127.0.0.1:0 with its own temporary data dir and silent logs, closed at
 * teardown (its admin token in `adminToken`).
 */
export async function startTestManager(
  t: { teardown(fn: () => unknown): void },
  options: Partial<ManagerOptions> = {},
): Promise<ManagerHandle> {
  const m = await startManager({
    listen: "127.0.0.1:0",
    dataDir: options.dataDir ?? (await tempDir(t)),
    logger: createLogger("manager", "silent"),
    ...options,
  });
  t.teardown(() => m.close());
  return m;
}
