import { HealthCheckResponse_ServingStatus as HealthStatus } from "../gen/grpc/health/v1/health_pb.js";
import { prepareDataDir } from "../lib/data-dir.js";
import { createLogger, type Logger } from "../lib/logger.js";
import { guardPlaintext, parseListen, startServer } from "../lib/rpc/server.js";
import { authorization } from "./api/authorization.js";
import { readToken, TOKEN_FILES, writeFirstTokens } from "./api/bootstrap-tokens.js";
import { ClusterTls, caFile, TLS_KEY_FILES } from "./api/cluster-tls.js";
import { managerHttp } from "./api/http-routes.js";
import { managerMetrics } from "./api/metrics-http.js";
import { MANAGER_FILES, managerRoutes } from "./api/routes.js";
import { ControlPlane } from "./core/control-plane.js";
import { type ManagerOptions, resolveOptions } from "./core/options.js";
import { RULES } from "./rules/index.js";
import { LevelStore, SECRET_KEY_FILE } from "./store/level-store.js";
import type { Store } from "./store/store.js";

export { readToken } from "./api/bootstrap-tokens.js";
export { caFile } from "./api/cluster-tls.js";
export type { ManagerOptions } from "./core/options.js";
export { SCHEDULERS, type SchedulerName } from "./core/placer.js";

/** A running manager. */
export interface ManagerHandle {
  /** host:port it serves on (the real port when 0 was asked for). */
  readonly address: string;
  /** The admin token made on the data dir's first start (undefined without auth). */
  readonly adminToken: string | undefined;
  /** The worker join token made on the data dir's first start (undefined without auth). */
  readonly workerToken: string | undefined;
  /**
   * With TLS: the cluster CA's certificate file (what clients pass as --ca) and its SHA-256,
   * which a join token carries (`<secret>@sha256:<hex>`). Undefined in plaintext.
   */
  readonly ca: { readonly file: string; readonly sha256: string } | undefined;
  /**
   * Graceful stop: health NOT_SERVING, streams and sessions closed, every accepted change
   * flushed to disk, the store closed — within `shutdownTimeoutMs`, after which it closes
   * anyway. Calling it twice returns the same promise.
   */
  close(): Promise<void>;
}

/**
 * Opens the control plane over `store` without serving it: for unit tests with a
 * {@link MemoryStore} behind createRouterTransport. Close it with `cp.close()`.
 */
export async function openControlPlane(
  store: Store,
  options: Omit<ManagerOptions, "dataDir"> = {},
): Promise<ControlPlane> {
  const logger = options.logger ?? createLogger("manager");
  return ControlPlane.open(store, resolveOptions(options), logger, RULES);
}

/**
 * Starts a manager: opens (or creates, mode 0700) its data directory and the LevelDB in it,
 * refusing one another user owns or may write (`UnsafeDataDirError`, lib/data-dir.ts), loads
 * every task and worker, and serves TaskService, WorkerService and MetricsService, with
 * grpc.health.v1 and server reflection, on `listen`.
 */
export async function startManager(options: ManagerOptions): Promise<ManagerHandle> {
  const resolved = resolveOptions(options);
  const logger: Logger = options.logger ?? createLogger("manager");
  const { host } = parseListen(resolved.listen);
  guardPlaintext({
    listen: resolved.listen,
    tls: Boolean(resolved.tls),
    insecure: Boolean(resolved.insecure),
    exposes: "tokens and task specs",
    remedy: "serve TLS (--tls, CUBE_TLS=1)",
    logger,
  });
  // 0700, ours alone: the store, the secrets key and the tokens are in it.
  await prepareDataDir(options.dataDir, {
    logger,
    secretFiles: [...TOKEN_FILES, SECRET_KEY_FILE, ...TLS_KEY_FILES],
  });
  const store = await LevelStore.open(options.dataDir, { eventRetention: resolved.eventRetention });
  let cp: ControlPlane;
  try {
    cp = await ControlPlane.open(store, resolved, logger, RULES);
  } catch (error) {
    await store.close().catch(() => undefined);
    throw error;
  }
  let server: Awaited<ReturnType<typeof startServer>>;
  let tls: ClusterTls | undefined;
  try {
    if (resolved.auth) await writeFirstTokens(cp, options.dataDir);
    if (resolved.tls) {
      tls = await ClusterTls.open({
        dataDir: options.dataDir,
        listenHost: host,
        logger,
        workerCertMs: resolved.workerCertificateMs,
      });
    }
    // Metrics first: calls refused for want of a token are counted too.
    const metrics = resolved.metrics ? managerMetrics(cp) : undefined;
    if (metrics) store.observeCommits((seconds) => cp.metrics.committed(seconds));
    const auth = resolved.auth
      ? authorization(cp.tokens, cp.clock, logger, { tls: !!tls })
      : undefined;
    server = await startServer({
      name: "the manager",
      listen: resolved.listen,
      routes: managerRoutes(cp, tls),
      files: MANAGER_FILES,
      // The dashboard at `/`, GET /metrics beside it.
      fallback: managerHttp(metrics?.fallback),
      gates: [...(metrics?.gates ?? []), ...(auth ? [auth.gate] : [])],
      interceptors: auth ? [auth.interceptor] : [],
      logger,
      tls: tls?.serverTls(),
    });
    const serving = server;
    tls?.start(() => serving.updateTls(tls?.serverTls() ?? { ca: "" }));
    // A manager that cannot write takes no task: health checks (a supervisor, a load
    // balancer, a Kubernetes probe) must see it as down, not SERVING.
    store.onFailure((error) => {
      serving.health.setAll(HealthStatus.NOT_SERVING);
      logger.error({ err: error }, "the store cannot be written: NOT_SERVING until restarted");
    });
  } catch (error) {
    await cp.close();
    await store.close().catch(() => undefined);
    throw error;
  }
  logger.info(
    {
      address: server.address,
      dataDir: options.dataDir,
      scheduler: resolved.scheduler,
      tls: tls ? { ca: caFile(options.dataDir), sha256: tls.caSha256 } : false,
    },
    "manager listening",
  );
  let closing: Promise<void> | undefined;
  // A file removed by its owner is not an error: the tokens still work, the manager just
  // cannot show them again.
  const [adminToken, workerToken] = resolved.auth
    ? await Promise.all([
        readToken(options.dataDir, "admin").catch(() => undefined),
        readToken(options.dataDir, "worker").catch(() => undefined),
      ])
    : [undefined, undefined];
  return {
    address: server.address,
    adminToken,
    workerToken,
    ca: tls ? { file: caFile(options.dataDir), sha256: tls.caSha256 } : undefined,
    close() {
      closing ??= (async () => {
        const work = (async () => {
          // Decisions stop first: workers dropping off as the server closes are not
          // DISCONNECTED, and no timer moves a task while the manager goes away.
          await cp.close();
          tls?.close();
          await server.close();
          await store.close();
        })();
        let timer: NodeJS.Timeout | undefined;
        const deadline = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            logger.warn({ ms: resolved.shutdownTimeoutMs }, "shutdown deadline passed");
            // Rejected, so that a process stopped this way exits non-zero: the drain did not
            // finish (what was committed is on disk; what was not, was never acknowledged).
            reject(new Error(`shutdown took longer than ${resolved.shutdownTimeoutMs} ms`));
          }, resolved.shutdownTimeoutMs);
        });
        try {
          await Promise.race([work, deadline]);
        } finally {
          clearTimeout(timer);
        }
        logger.info("manager stopped");
      })();
      return closing;
    },
  };
}
