import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { file_cube_v1_metrics } from "../gen/cube/v1/metrics_pb.js";
import { file_cube_v1_task_service } from "../gen/cube/v1/task_service_pb.js";
import { InventorySchema, StatsSchema } from "../gen/cube/v1/worker_service_pb.js";
import { prepareDataDir } from "../lib/data-dir.js";
import { createLogger, type Logger } from "../lib/logger.js";
import { plaintextDialProblem } from "../lib/rpc/client.js";
import { guardPlaintext, parseListen, startServer } from "../lib/rpc/server.js";
import { managerOnly, managerSecretOnly } from "./api/manager-only.js";
import { WorkerMetrics } from "./api/metrics.js";
import { workerRoutes } from "./api/server.js";
import { type BackoffOptions, backoffDelay } from "./backoff.js";
import { type ContainerPolicy, DEFAULT_POLICY } from "./docker/container-spec.js";
import { createDockerDriver } from "./docker/driver.js";
import { DEFAULT_SANDBOX_IMAGE, DEFAULT_WARM_SANDBOXES } from "./docker/sandbox-pool.js";
import { defaultCapacity, NodeMetricsSampler } from "./node-metrics.js";
import { WORKER_SECRET_KEY_FILE, WorkerStore } from "./store/worker-store.js";
import { CERT_FILE, CREDENTIAL_FILE, WorkerIdentity } from "./stream/join.js";
import { Outbox } from "./stream/outbox.js";
import { StatsFeed } from "./stream/stats-feed.js";
import { StreamClient } from "./stream/stream-client.js";
import type { Driver } from "./tasks/driver.js";
import { EngineMonitor } from "./tasks/engine-monitor.js";
import { HealthChecker } from "./tasks/health-checker.js";
import { TaskRunner } from "./tasks/task-runner.js";

export { DataDirInUseError } from "./store/worker-store.js";

/** How to start a worker. */
export interface WorkerOptions {
  /** The manager's host:port. */
  manager: string;
  /**
   * A worker join token (role worker) from the manager: its data dir's worker.token, or
   * `cube token create --role worker`. Traded once for a credential of the worker's own
   * (kept in the data dir, worker/stream/join.ts). Needed unless the manager runs without
   * auth. On a TLS cluster it may carry the CA's digest (`<secret>@sha256:<hex>`), which a
   * new worker checks the manager's CA against.
   */
  token?: string;
  /**
   * The cluster CA's certificate file (`cube worker --ca`): the worker then dials the manager
   * over mTLS and serves TLS itself. Not needed with a join token carrying the CA's digest, nor
   * once joined (the CA is kept in the data dir).
   */
  ca?: string;
  /** host:port of the worker's own gRPC server; default "127.0.0.1:5556"; port 0 picks one. */
  listen?: string;
  /**
   * Accept plaintext off loopback (`cube worker --insecure`): serve it on a non-loopback
   * `listen` (in a cluster without TLS the worker's port answers anyone: its tasks, their
   * logs) and dial a non-loopback manager in it (the join token, the credential and secret
   * values in the clear). Both are refused unless asked for, as the manager refuses to listen
   * so.
   */
  insecure?: boolean;
  /** Serve GET /metrics (Prometheus text, no token needed) on that port. Default true. */
  metrics?: boolean;
  /** Name for people; default the host name. */
  name?: string;
  /** Where the worker keeps its LevelDB (id, outbox, task records). One worker per directory. */
  dataDir: string;
  labels?: Record<string, string>;
  /** Docker engine to use; default DOCKER_HOST or the local socket. */
  dockerHost?: string;
  /** How containers are confined, over DEFAULT_POLICY (worker/docker/container-spec.ts). */
  policy?: Partial<ContainerPolicy>;
  /** An image pull without progress for this long is cancelled and its task fails; 0 never. Default 60 s. */
  pullStallMs?: number;
  /**
   * Any other call to the engine (create, start, inspect, stop on top of its grace, remove,
   * list) unanswered for this long is abandoned and retried, as the kubelet's
   * --runtime-request-timeout; 0 never. Default 2 min.
   */
  runtimeRequestTimeoutMs?: number;
  /**
   * Network sandboxes kept ready for tasks that publish no port, which then start without the
   * engine building a network for them (worker/docker/sandbox-pool.ts); 0 none. Default
   * {@link DEFAULT_WARM_SANDBOXES}.
   */
  warmSandboxes?: number;
  /** The image those sandboxes run; default {@link DEFAULT_SANDBOX_IMAGE} (built by the set-up). */
  sandboxImage?: string;
  /** A driver to use instead of Docker (hollow workers in benchmarks); closed with the worker. */
  driver?: Driver;
  logger?: Logger;
  /** Time between metrics samples sent to the manager; default 2 s. */
  statsIntervalMs?: number;
  /** How long a ping to the manager may go unanswered; default the manager's heartbeat timeout. */
  pingTimeoutMs?: number;
  /** What the worker offers, where not the machine's cores, memory and free disk. */
  capacity?: Partial<{ cpu: number; memoryBytes: bigint; diskBytes: bigint }>;
}

/** A running worker. */
export interface WorkerHandle {
  /** Its stable id (kept in the data directory). */
  readonly id: string;
  /** host:port its gRPC server is bound to. */
  readonly address: string;
  /**
   * Stops gracefully: stops taking assignments, lets those under way finish, waits
   * (briefly) for the manager to acknowledge pending updates, says goodbye (restarting,
   * unless told otherwise: the manager then waits its restart grace before it replaces the
   * worker's tasks), closes the stream and the store. Containers keep running; the next
   * start re-adopts them.
   */
  close(goodbye?: { restarting?: boolean; reason?: string }): Promise<void>;
}

const VERSION: string = JSON.parse(
  readFileSync(new URL("../package.json", import.meta.url), "utf8"),
).version;

/** Deadlines of a graceful close, shorter together than the process's 10 s. */
const DRAIN_MS = 4000;
const FLUSH_MS = 2000;

/**
 * Starts a worker: opens its data directory (made 0700; failing with `UnsafeDataDirError`,
 * lib/data-dir.ts, when another user owns it or may write it, and with
 * {@link DataDirInUseError} when another worker has it), re-adopts the containers it left
 * running, serves its own gRPC API, and keeps a stream to the manager open, reconnecting as
 * needed.
 */
export async function startWorker(options: WorkerOptions): Promise<WorkerHandle> {
  // Tells the manager, when this worker registers again after a restart, that it is a new
  // agent whose containers ran on (see Register.agent_started_at).
  const agentStartedAt = timestampNow();
  const baseLogger = options.logger ?? createLogger("worker");
  // 0700, ours alone: the credential, the keys and the task records are in it.
  await prepareDataDir(options.dataDir, {
    logger: baseLogger,
    secretFiles: [CREDENTIAL_FILE, CERT_FILE, WORKER_SECRET_KEY_FILE],
  });
  const store = await WorkerStore.open(options.dataDir);
  const workerId = store.workerId;
  const logger = baseLogger.child({ worker: workerId });
  const ownDriver = !options.driver;
  const metrics = new WorkerMetrics();
  const driver =
    options.driver ??
    createDockerDriver({
      dockerHost: options.dockerHost,
      logger,
      policy: { ...DEFAULT_POLICY, ...options.policy },
      pullStallMs: options.pullStallMs,
      requestTimeoutMs: options.runtimeRequestTimeoutMs,
      sandboxes: {
        size: options.warmSandboxes ?? DEFAULT_WARM_SANDBOXES,
        image: options.sandboxImage || DEFAULT_SANDBOX_IMAGE,
      },
      instrument: (docker) => metrics.instrumentDocker(docker),
      onStarted: (network) => metrics.containerStarted(network),
      readSandboxes: (ready) => metrics.readSandboxesFrom(ready),
    });
  const health = new HealthChecker((healthy) => metrics.healthCheck(healthy));
  const ping = driver.ping?.bind(driver);
  const engine = ping ? new EngineMonitor({ ping, logger }) : undefined;
  if (engine) driver.onEngineLost?.((reason) => engine.suspect(reason));
  const statsIntervalMs = options.statsIntervalMs ?? 2000;
  const sampler = new NodeMetricsSampler({
    dataDir: options.dataDir,
    workerId,
    intervalMs: statsIntervalMs,
    logger,
  });
  let stream: StreamClient | undefined;
  let stats: StatsFeed | undefined;
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  let identity: WorkerIdentity | undefined;
  try {
    const self = await WorkerIdentity.open({
      manager: options.manager,
      dataDir: options.dataDir,
      workerId,
      token: options.token,
      ca: options.ca ? await readFile(options.ca, "utf8") : undefined,
      logger,
    });
    identity = self;
    guardManagerDial(options.manager, self.tls, Boolean(options.insecure), logger);
    const outbox = await Outbox.open(store);
    const runner = new TaskRunner({
      workerId,
      driver,
      store,
      outbox,
      health,
      logger,
      send: (message) => stream?.send(message),
      engine,
    });
    metrics.readTasksFrom(runner);
    const recovered = await runner.recover();
    logger.info({ ...recovered, pendingUpdates: outbox.pending().length }, "worker state loaded");
    const feed = new StatsFeed({
      workerId,
      node: () => sampler.latest(),
      driver,
      tasks: () => runner.tasks(),
      intervalMs: statsIntervalMs,
    });
    stats = feed;
    const listen = options.listen ?? "127.0.0.1:5556";
    guardPlaintext({
      listen,
      tls: Boolean(self.tls),
      insecure: Boolean(options.insecure),
      exposes: "this worker's tasks and their logs",
      remedy: "join a TLS manager",
      logger,
    });
    const serving = options.metrics === false ? undefined : metrics.serving();
    const srv = await startServer({
      name: "the worker",
      listen,
      routes: workerRoutes({ workerId, tasks: () => runner.tasks(), stats: feed, driver }),
      files: [file_cube_v1_task_service, file_cube_v1_metrics],
      fallback: serving?.fallback,
      // Only the manager gets answers: over TLS by its certificate, else by the secret the
      // worker gives it when it registers (metrics first: refused calls are counted too).
      tls: self.serverTls(),
      gates: [
        ...(serving?.gates ?? []),
        self.tls ? managerOnly() : managerSecretOnly(store.callSecret),
      ],
      logger,
    });
    server = srv;
    self.on("certificate", () => srv.updateTls(self.serverTls() ?? {}));
    const capacity = { ...(await defaultCapacity(options.dataDir)), ...options.capacity };
    const client = new StreamClient({
      manager: options.manager,
      token: async () => (await self.dial()).token,
      tls: () => self.clientTls(),
      outbox,
      logger,
      register: () => ({
        workerId,
        name: options.name || hostname(),
        address: advertised(srv.address),
        capacity,
        labels: options.labels ?? {},
        version: VERSION,
        callSecret: store.callSecret,
        engine: engine?.report,
        agentStartedAt,
      }),
      inventory: () => runner.inventory(),
      healthReports: () => runner.healthReports(),
      onAssignment: (assignment) => void runner.apply(assignment),
      ...(options.pingTimeoutMs ? { pingTimeoutMs: options.pingTimeoutMs } : {}),
    });
    stream = client;
    metrics.watchStream(client);
    feed.on("sample", (s) => client.send({ case: "stats", value: create(StatsSchema, s) }));
    const unfollow = engine ? followEngine(engine, runner, client, logger) : undefined;
    feed.start();
    self.start();
    client.start();
    logger.info({ address: srv.address, manager: options.manager }, "worker started");

    let closing: Promise<void> | undefined;
    return {
      id: workerId,
      address: srv.address,
      close(goodbye = {}) {
        closing ??= (async () => {
          await srv.close();
          await runner.drain(DRAIN_MS);
          const flushed = await client.flush(FLUSH_MS);
          await client.close(undefined, {
            restarting: goodbye.restarting ?? true,
            reason: goodbye.reason ?? "",
          });
          feed.close();
          sampler.close();
          health.close();
          unfollow?.();
          runner.close();
          engine?.close();
          self.close();
          if (ownDriver) await driver.close();
          await outbox.settled();
          await store.close();
          logger.info(
            { unacknowledged: outbox.pending().length, flushed },
            "worker stopped; containers left running",
          );
        })();
        return closing;
      },
    };
  } catch (error) {
    await stream?.close();
    identity?.close();
    stats?.close();
    await server?.close();
    sampler.close();
    health.close();
    engine?.close();
    if (ownDriver) await driver.close().catch(() => undefined);
    await store.close();
    throw error;
  }
}

/**
 * Tells the manager whenever the container engine goes away or comes back, and re-syncs
 * with it when it is back: the task records are brought in line with what the engine holds
 * (exits missed meanwhile reported), then a fresh inventory goes up, so the manager resends
 * what is missing and stops what should not run. Re-syncs never overlap; one asked for
 * while another runs follows it.
 */
function followEngine(
  engine: EngineMonitor,
  runner: TaskRunner,
  client: StreamClient,
  logger: Logger,
): () => void {
  engine.on("change", (report) => client.send({ case: "engine", value: report }));
  let running: Promise<void> | undefined;
  let again = false;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let failures = 0;
  const resync = () => {
    clearTimeout(retry);
    if (closed) return;
    if (running) {
      again = true;
      return;
    }
    running = (async () => {
      do {
        again = false;
        const items = await runner.resync();
        if (items) client.send({ case: "inventory", value: create(InventorySchema, { items }) });
      } while (again);
    })()
      .catch((error: unknown) => logger.error({ err: error }, "re-sync with the engine failed"))
      .finally(() => {
        running = undefined;
        // Not finished (a listing or a step failed): again after a pause. The monitor's "up"
        // comes only after a "down", and an engine that failed one call may never go down.
        if (closed || !runner.recoveryPending) {
          failures = 0;
          return;
        }
        retry = setTimeout(resync, backoffDelay(failures++, RESYNC_BACKOFF));
      });
  };
  engine.on("up", resync);
  // The recovery at start may have been put off already, before anything listened.
  if (runner.recoveryPending) resync();
  return () => {
    closed = true;
    clearTimeout(retry);
  };
}

/** Pauses between re-syncs that did not finish. */
const RESYNC_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 30_000 };

/** The address to give the manager: a wildcard bind is reached through the host name. */
function advertised(address: string): string {
  const { host, port } = parseListen(address);
  return host === "0.0.0.0" || host === "::" ? `${hostname()}:${port}` : address;
}

/**
 * Refuses to dial a manager that is not on loopback in plaintext, where the join token, the
 * credential and the secret values of assignments would cross the network in the clear,
 * unless `insecure` (--insecure, CUBE_INSECURE=1, which also lets the worker listen in
 * plaintext off loopback) says so; then warns at every start, as the listening side does.
 */
function guardManagerDial(manager: string, tls: boolean, insecure: boolean, logger: Logger): void {
  const exposes = "the join token, this worker's credential and its tasks' secret values";
  const problem = plaintextDialProblem({ address: manager, tls, insecure: false, exposes });
  if (!problem) return;
  if (!insecure) {
    throw new Error(
      `${problem}; join a TLS manager (a join token with its CA's digest, <secret>@sha256:<hex>, or --ca), or pass --insecure (CUBE_INSECURE=1) on a network you trust`,
    );
  }
  logger.warn(
    { manager },
    `INSECURE: dialling the manager in plaintext off loopback; anyone on the network can read ${exposes}`,
  );
}
