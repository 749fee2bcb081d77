import { join, resolve } from "node:path";
import { Command } from "commander";
import { stopOnSignals } from "../../lib/stop-on-signals.js";
import type { ManagerHandle } from "../../manager/index.js";
import { sandboxesFromEnv } from "../../worker/env.js";
import type { WorkerHandle } from "../../worker/index.js";
import { CliError, startError, usageError } from "../cli-error.js";
import { DEFAULT_MANAGER } from "../client.js";
import { arg } from "../client-options.js";
import { writeConfig } from "../config-file.js";
import { envFlag } from "../env-switch.js";
import type { Io } from "../io.js";
import { checkLogLevelEnv, parseLogLevel } from "../log-level.js";
import { checkListenAddress } from "../manager-address.js";
import { metricsWanted, NO_METRICS_HELP } from "../metrics-flag.js";

interface DevOptions {
  listen: string;
  dataDir: string;
  name?: string;
  logLevel?: string;
  metrics?: boolean;
  tls?: boolean;
}

/** How long Ctrl-C may take before `cube dev` exits anyway. */
const SHUTDOWN_DEADLINE_MS = 10_000;

/** `cube dev`: a manager and one local worker in one process, for a laptop. */
export function devCommand(io: Io): Command {
  return new Command("dev")
    .description("run a manager and a local worker in one process (a one-machine cluster)")
    .option("--listen <host:port>", "the manager's address", DEFAULT_MANAGER)
    .option("--data-dir <dir>", "where both keep their state", "./.cube/dev")
    .option("--name <name>", "the worker's name (default the host name)")
    .option(
      "--log-level <level>",
      "log level of the JSON logs on stderr: fatal, error, warn, info, debug, trace or silent (env CUBE_LOG_LEVEL, default warn)",
      arg(parseLogLevel),
    )
    .option("--no-metrics", NO_METRICS_HELP)
    .option(
      "--tls",
      "serve TLS with the cluster's own CA (env CUBE_TLS=1); the worker joins with a certificate",
    )
    .addHelpText(
      "after",
      `
Plaintext on 127.0.0.1 unless --tls: with it, the manager makes the cluster's CA in its data
dir, the worker joins with a certificate, and the config file names the CA for \`cube\`.
The worker listens on a free port of 127.0.0.1. Ctrl-C stops the worker, then the manager;
containers keep running, and the next \`cube dev\` with the same --data-dir adopts them.

Examples:
  cube dev
  cube dev --listen 127.0.0.1:6000 --data-dir /tmp/cube   # then: export CUBE_MANAGER=127.0.0.1:6000`,
    )
    .action((opts: DevOptions) => dev(io, opts));
}

async function dev(io: Io, opts: DevOptions): Promise<void> {
  if (opts.logLevel === undefined) checkLogLevelEnv(io.env);
  await checkListenAddress(opts.listen, "--listen");
  const tls = Boolean(opts.tls) || envFlag(io.env, "CUBE_TLS") === true;
  const metrics = metricsWanted(opts.metrics, io.env);
  let sandboxes: ReturnType<typeof sandboxesFromEnv>;
  try {
    sandboxes = sandboxesFromEnv(io.env);
  } catch (error) {
    throw usageError((error as Error).message);
  }
  // Loaded here, not at the top: client commands should not pay for Docker and LevelDB.
  const [{ createLogger }, { startManager, readToken }, { startWorker }] = await Promise.all([
    import("../../lib/logger.js"),
    import("../../manager/index.js"),
    import("../../worker/index.js"),
  ]);
  const logger = createLogger("cube-dev", opts.logLevel ?? io.env.CUBE_LOG_LEVEL ?? "warn");
  let manager: ManagerHandle;
  try {
    // Its manager/ and worker/ are each made 0700 (and it too, when missing) and refused
    // when another user owns or may write them: it holds nothing else, and may be any
    // directory of the user's (--data-dir .), so it is left as it is.
    manager = await startManager({
      listen: opts.listen,
      dataDir: join(opts.dataDir, "manager"),
      logger,
      metrics,
      tls,
    });
  } catch (error) {
    throw startFailure("manager", opts.listen, error);
  }
  const ca = manager.ca ? resolve(manager.ca.file) : undefined;
  const managerDir = join(opts.dataDir, "manager");
  // The local user's client commands need no flags: the config file says where and with
  // which token (the admin token this manager made on its first start).
  const adminToken = await readToken(managerDir, "admin");
  const configFile = await writeConfig(
    io.env,
    { manager: manager.address, token: adminToken, ...(ca ? { ca } : {}) },
    (warning) => io.stderr.write(`cube: warning: ${warning}\n`),
  );
  let worker: WorkerHandle;
  try {
    worker = await startWorker({
      manager: manager.address,
      token: await readToken(managerDir, "worker"),
      ca,
      listen: "127.0.0.1:0",
      name: opts.name,
      dataDir: join(opts.dataDir, "worker"),
      logger,
      metrics,
      ...sandboxes,
    });
  } catch (error) {
    await manager.close().catch(() => undefined);
    throw startFailure("worker", "127.0.0.1:0", error);
  }
  // npm exec (npx) and `npm run dev` say so in npm_command: from a clone, the other
  // terminal needs `npx cube`; a `cube` on the PATH (npm link) sets no npm_command.
  const viaNpm =
    io.env.npm_command === "exec" ||
    io.env.npm_command === "run" ||
    io.env.npm_command === "run-script";
  const self = viaNpm ? "npx cube" : "cube";
  io.stdout.write(
    banner(manager.address, worker, opts.dataDir, self, configFile, ca, {
      url: dashboardUrl(manager.address, adminToken, ca !== undefined),
    }),
  );

  stopOnSignals({
    onStop: (signal) => io.stderr.write(`\n${signal}: stopping the worker, then the manager…\n`),
    // The worker first: it flushes its updates to a manager that is still there.
    close: async () => {
      await worker
        .close()
        .catch((error: unknown) => logger.error({ err: error }, "worker close failed"));
      await manager.close();
      io.stderr.write("cube dev: stopped\n");
    },
    onError: (error) => logger.error({ err: error }, "manager close failed"),
    deadline: {
      ms: SHUTDOWN_DEADLINE_MS,
      onExpired: () => io.stderr.write("cube dev: shutdown took too long, exiting\n"),
    },
  });
  // Runs until a signal: stopOnSignals exits the process.
  await new Promise<never>(() => {});
}

/**
 * The dashboard's address with the admin token in its fragment: a fragment never leaves the
 * browser (no request, no server log carries it), and the page moves it to the tab's
 * sessionStorage and out of the address bar at once (web/src/token.ts).
 */
export function dashboardUrl(managerAddress: string, token: string, tls: boolean): string {
  return `${tls ? "https" : "http"}://${managerAddress}/#token=${encodeURIComponent(token)}`;
}

function startFailure(what: string, listen: string, error: unknown): CliError {
  const message = (error as Error).message ?? String(error);
  if ((error as NodeJS.ErrnoException).code === "EADDRINUSE" || /EADDRINUSE/.test(message)) {
    return new CliError(
      `cannot start the ${what}: ${listen} is in use (another \`cube dev\` or \`cube manager\`?): choose another with --listen`,
    );
  }
  return startError(what, error);
}

/**
 * What `cube dev` prints once both are up: where they are, and what to try next, spelt
 * the way this `cube` was started (`npx cube` when run through npx).
 */
export function banner(
  managerAddress: string,
  worker: { id: string; address: string },
  dataDir: string,
  cube = "cube",
  configFile?: string,
  ca?: string,
  dashboard?: { url: string },
): string {
  const config = configFile
    ? `cube dev: address, admin token${ca ? " and CA" : ""} written to ${configFile} for \`${cube}\`\n`
    : "";
  const web = dashboard
    ? `cube dev: dashboard ${dashboard.url}${ca ? ` (once your browser trusts ${ca})` : ""}\n`
    : "";
  return `cube dev: manager listening on ${managerAddress}${ca ? ` (TLS, CA ${ca})` : ""}
cube dev: worker ${worker.id} listening on ${worker.address}
cube dev: data in ${dataDir}; Ctrl-C stops both
${web}${config}
Try, in another terminal:
  ${cube} run cube/httpd:local --name web --port 8080:80 --health-path /health --wait
  curl http://127.0.0.1:8080/health
  ${cube} ps
  ${cube} logs web
  ${cube} stop web
`;
}
