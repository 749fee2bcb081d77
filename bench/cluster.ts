/**
 * Real cube processes for the scenarios: a manager (manager/main.ts) and workers
 * (worker/main.ts), each a child process on loopback with port 0, plus clients.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { type TaskEvent, type TaskSpecSchema, TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService, WatchTasksRequestSchema } from "../gen/cube/v1/task_service_pb.js";
import { WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { WorkerService } from "../gen/cube/v1/worker_service_pb.js";
import { bearer } from "../lib/rpc/client.js";
import { STREAM_WINDOW, WideWindowSessionManager } from "../lib/rpc/flow-control.js";
import { readToken } from "../manager/api/bootstrap-tokens.js";
import { dockerClient } from "../worker/docker/driver.js";
import { removeLabelled } from "../worker/docker/remove-labelled.js";
import { LABEL_SANDBOX } from "../worker/docker/sandbox-pool.js";
import { type Child, spawnChild } from "./children.js";
import { deferCleanup } from "./cleanup.js";

/** Manager settings passed as CUBE_* variables. */
export interface ManagerSettings {
  readonly dataDir: string;
  readonly heartbeatIntervalMs?: number;
  readonly heartbeatTimeoutMs?: number;
  readonly downGraceMs?: number;
  readonly scheduler?: "round-robin" | "epvm" | "fit";
  readonly nodeFlags?: readonly string[];
  readonly env?: Record<string, string>;
}

/** A manager process and where it listens. */
export interface ManagerProcess extends Child {
  readonly address: string;
}

/** Where a child said it listens: `{"address": …}`, `{"listening": …}` or "… listening on HOST:PORT …". */
function addressOf(child: Child): string {
  const { address, listening, text } = child.hello as {
    address?: string;
    listening?: string;
    text?: string;
  };
  const found = address ?? listening ?? /listening on (\S+)/.exec(text ?? "")?.[1];
  if (!found) throw new Error(`${child.name} printed no address: ${JSON.stringify(child.hello)}`);
  return found;
}

/**
 * The admin and worker join tokens of each manager the bench spawned, by address: the
 * bench's clients and workers use them as a user's would (auth is on by default).
 */
const TOKENS = new Map<string, { admin: string; worker: string }>();

/** The admin token of a manager the bench spawned, or undefined (e.g. an in-process one). */
export function adminTokenOf(address: string): string | undefined {
  return TOKENS.get(address)?.admin;
}

/** The worker join token of a manager the bench spawned, or undefined. */
export function joinTokenOf(address: string): string | undefined {
  return TOKENS.get(address)?.worker;
}

/** The bearer interceptor for a manager the bench spawned (none for one without a token). */
function withToken(address: string): Interceptor[] {
  const token = adminTokenOf(address);
  return token ? [bearer(token)] : [];
}

/** Spawns manager/main.ts on 127.0.0.1:0 and waits until it listens. */
export async function spawnManager(settings: ManagerSettings): Promise<ManagerProcess> {
  const env: Record<string, string> = {
    CUBE_LISTEN: "127.0.0.1:0",
    CUBE_DATA_DIR: settings.dataDir,
    ...settings.env,
  };
  if (settings.heartbeatIntervalMs)
    env.CUBE_HEARTBEAT_INTERVAL = String(settings.heartbeatIntervalMs);
  if (settings.heartbeatTimeoutMs) env.CUBE_HEARTBEAT_TIMEOUT = String(settings.heartbeatTimeoutMs);
  if (settings.downGraceMs) env.CUBE_DOWN_GRACE = String(settings.downGraceMs);
  if (settings.scheduler) env.CUBE_SCHEDULER = settings.scheduler;
  const child = await spawnChild({
    name: "manager",
    script: "manager/main.ts",
    env,
    ...(settings.nodeFlags ? { nodeFlags: settings.nodeFlags } : {}),
  });
  const address = addressOf(child);
  if (settings.env?.CUBE_AUTH !== "0") {
    TOKENS.set(address, {
      admin: await readToken(settings.dataDir, "admin"),
      worker: await readToken(settings.dataDir, "worker"),
    });
  }
  return Object.assign(child, { address });
}

/** A worker process, its id and address. */
export interface WorkerProcess extends Child {
  readonly id: string;
  readonly address: string;
}

/** Spawns worker/main.ts (Docker driver) against `manager`. */
export async function spawnWorker(
  manager: string,
  dataDir: string,
  name: string,
): Promise<WorkerProcess> {
  const child = await spawnChild({
    name,
    script: "worker/main.ts",
    env: {
      CUBE_MANAGER: manager,
      CUBE_LISTEN: "127.0.0.1:0",
      CUBE_DATA_DIR: dataDir,
      CUBE_NAME: name,
      ...(TOKENS.has(manager) ? { CUBE_TOKEN: TOKENS.get(manager)?.worker as string } : {}),
    },
  });
  const { id } = child.hello as { id?: string };
  if (!id) throw new Error(`${name} printed no id: ${JSON.stringify(child.hello)}`);
  // Its warm network sandboxes outlive it, as its containers do (a killed worker cannot
  // remove them): removed when the benchmark ends.
  deferCleanup(`network sandboxes of ${name}`, () =>
    removeLabelled(dockerClient(), `${LABEL_SANDBOX}=${id}`),
  );
  return Object.assign(child, { id, address: addressOf(child) });
}

/**
 * A TaskService client on its own HTTP/2 connection, with the wide receive windows of
 * lib/rpc/flow-control.ts (the cube CLI's transport keeps HTTP/2's 64 KiB defaults): for
 * the bench's own reads (event-log replays, polls) and the submits of latency runs. The
 * throughput scenario submits through the CLI's own transport unless told otherwise.
 */
export function taskClient(address: string): Client<typeof TaskService> {
  const baseUrl = `http://${address}`;
  const settings = { initialWindowSize: STREAM_WINDOW };
  return createClient(
    TaskService,
    createGrpcTransport({
      baseUrl,
      // Pings and HTTP/2 settings go to the session manager: the transport's own options
      // for them only build its default one.
      sessionManager: new WideWindowSessionManager(baseUrl, { pingIntervalMs: 5000 }, { settings }),
      interceptors: withToken(address),
    }),
  );
}

/** Polls ListTasks until the manager answers; resolves with the answer time (Date.now()). */
export async function waitForListTasks(address: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  for (;;) {
    // A fresh client each time: a refused connection must not be cached as a dead session.
    const client = taskClient(address);
    try {
      await client.listTasks({ pageSize: 100 }, { timeoutMs: 2000 });
      return Date.now();
    } catch (error) {
      lastError = (error as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(`the manager did not answer ListTasks in ${timeoutMs} ms: ${lastError}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Follows WatchTasks from `afterRevision` and calls `onEvent` with each event and its
 * arrival time (Date.now()); `stop()` ends the stream. `ended` resolves (never rejects)
 * with the error that ended the stream, or undefined after `stop()`.
 */
export function watchTasks(
  client: Client<typeof TaskService>,
  afterRevision: bigint,
  onEvent: (event: TaskEvent, at: number) => void,
): { stop: () => void; ended: Promise<Error | undefined> } {
  const abort = new AbortController();
  const ended = (async () => {
    try {
      const request = create(WatchTasksRequestSchema, { afterRevision });
      for await (const res of client.watchTasks(request, { signal: abort.signal })) {
        if (res.event) onEvent(res.event, Date.now());
      }
      return abort.signal.aborted ? undefined : new Error("the manager ended WatchTasks");
    } catch (error) {
      return abort.signal.aborted ? undefined : (error as Error);
    }
  })();
  return { stop: () => abort.abort(), ended };
}

/** The revision to watch after so that only events from now on arrive. */
export async function currentRevision(client: Client<typeof TaskService>): Promise<bigint> {
  return (await client.listTasks({ pageSize: 1 })).revision;
}

/** Whether an event says its task is RUNNING (at the given generation, when set). */
export function isRunning(event: TaskEvent, generation?: bigint): boolean {
  const task = event.task;
  if (!task || task.state !== TaskState.RUNNING) return false;
  return generation === undefined || task.generation === generation;
}

/** Event time (the manager's clock) in ms. */
export function eventMs(event: TaskEvent): number {
  return event.time ? timestampMs(event.time) : Number.NaN;
}

export type SpecInit = MessageInitShape<typeof TaskSpecSchema>;

/** Waits until at least `count` workers are READY; resolves with their ids. */
export async function waitForWorkers(
  address: string,
  count: number,
  timeoutMs: number,
): Promise<string[]> {
  const client = createClient(
    WorkerService,
    createGrpcTransport({
      baseUrl: `http://${address}`,
      pingIntervalMs: 5000,
      interceptors: withToken(address),
    }),
  );
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { workers } = await client.listWorkers({});
    const ready = workers.filter((w) => w.status === WorkerStatus.READY).map((w) => w.id);
    if (ready.length >= count) return ready;
    if (Date.now() > deadline) {
      throw new Error(`only ${ready.length} of ${count} workers READY after ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
