import { resolve } from "node:path";
import { Command } from "commander";
import { envSetting } from "../../lib/env-setting.js";
import { parseDuration, parseEnvDuration } from "../../lib/parse-duration.js";
import { isLoopback } from "../../lib/rpc/client.js";
import { joinToken } from "../../lib/tls/identity.js";
import type { ManagerHandle } from "../../manager/index.js";
import { CliError, startError, usageError } from "../cli-error.js";
import { DEFAULT_MANAGER } from "../client.js";
import { arg } from "../client-options.js";
import { writeConfig } from "../config-file.js";
import { envFlag } from "../env-switch.js";
import type { Io } from "../io.js";
import { checkLogLevelEnv } from "../log-level.js";
import { checkListenAddress } from "../manager-address.js";
import { metricsWanted, NO_METRICS_HELP } from "../metrics-flag.js";
import { parseCount } from "../parse-enum.js";

type SchedulerName = "round-robin" | "epvm" | "fit";
const SCHEDULERS: readonly SchedulerName[] = ["round-robin", "epvm", "fit"];

/** The flags of `cube manager`, as commander parses them. */
export interface ManagerFlags {
  listen?: string;
  dataDir?: string;
  scheduler?: SchedulerName;
  heartbeatInterval?: number;
  heartbeatTimeout?: number;
  downGrace?: number;
  startupGrace?: number;
  restartGrace?: number;
  assignmentResend?: number;
  assignmentWindow?: number;
  shutdownTimeout?: number;
  taskGcAfter?: number;
  nodeGcAfter?: number;
  metrics?: boolean;
  insecure?: boolean;
  tls?: boolean;
}

/** Where the manager keeps its data when neither --data-dir nor CUBE_DATA_DIR says. */
export const DEFAULT_MANAGER_DATA_DIR = "./.cube/manager";

/**
 * The longest --task-gc-after and --node-gc-after: an age the minute's sweep compares, not a
 * timer, has no 24.8-day ceiling.
 */
const AGE_MAX_MS = Number.MAX_SAFE_INTEGER;

function parseAge(input: string): number {
  return parseDuration(input, AGE_MAX_MS);
}

function parseScheduler(input: string): SchedulerName {
  if (!(SCHEDULERS as readonly string[]).includes(input)) {
    throw new Error(`"${input}" is not a scheduler: use ${SCHEDULERS.join(", ")}`);
  }
  return input as SchedulerName;
}

/** `cube manager`: the control plane, on its own. */
export function managerCommand(io: Io): Command {
  return new Command("manager")
    .description("run the manager: the control plane that workers join and clients talk to")
    .option(
      "--listen <host:port>",
      `address to serve on (env CUBE_LISTEN, default ${DEFAULT_MANAGER}; port 0 picks one)`,
    )
    .option(
      "--data-dir <dir>",
      `where the manager keeps its state (env CUBE_DATA_DIR, default ${DEFAULT_MANAGER_DATA_DIR})`,
    )
    .option(
      "--scheduler <name>",
      "round-robin, epvm or fit (env CUBE_SCHEDULER, default fit)",
      arg(parseScheduler),
    )
    .option(
      "--heartbeat-interval <duration>",
      "how often workers report when idle (env CUBE_HEARTBEAT_INTERVAL, default 500ms)",
      arg(parseDuration),
    )
    .option(
      "--heartbeat-timeout <duration>",
      "silence after which a worker is DISCONNECTED (env CUBE_HEARTBEAT_TIMEOUT, default 2s)",
      arg(parseDuration),
    )
    .option(
      "--task-gc-after <duration>",
      "an ended task (no restart to come, no longer a job's replica) is removed this long after it ended; 0 keeps them (env CUBE_TASK_GC_AFTER, default 4h; a job keeps its 10 newest ended replicas whatever their age)",
      arg(parseAge),
    )
    .option(
      "--node-gc-after <duration>",
      "a worker DOWN this long and holding no task is removed, as `cube node rm` removes it (an agent that dials in later registers as new); 0 keeps them (env CUBE_NODE_GC_AFTER, default 24h)",
      arg(parseAge),
    )
    .option(
      "--down-grace <duration>",
      "then, time until it is DOWN and its tasks move (env CUBE_DOWN_GRACE, default 1s)",
      arg(parseDuration),
    )
    .option(
      "--startup-grace <duration>",
      "after a manager restart, time workers get to reconnect before their tasks move (env CUBE_STARTUP_GRACE, default max(down grace, 6s))",
      arg(parseDuration),
    )
    .option(
      "--restart-grace <duration>",
      "time a worker that said it is restarting (SIGTERM) gets to come back before its tasks are replaced (env CUBE_RESTART_GRACE, default 30s)",
      arg(parseDuration),
    )
    .option(
      "--assignment-resend <duration>",
      "an assignment a worker has not acknowledged for this long is sent again (env CUBE_ASSIGNMENT_RESEND, default 5s)",
      arg(parseDuration),
    )
    .option(
      "--assignment-window <n>",
      "assignments a worker may have unacknowledged before the rest wait in the manager (env CUBE_ASSIGNMENT_WINDOW, default 16)",
      arg(parseWindow),
    )
    .option(
      "--shutdown-timeout <duration>",
      "how long SIGINT/SIGTERM waits for the manager to drain (decisions stopped, store flushed, streams closed) before it exits 1 anyway (env CUBE_SHUTDOWN_TIMEOUT, default 5s)",
      arg(parseDuration),
    )
    .option(
      "--tls",
      "serve TLS with the cluster's own CA, made in the data dir on the first start; workers get certificates from it (env CUBE_TLS=1)",
    )
    .option(
      "--insecure",
      "serve plaintext on a non-loopback address (env CUBE_INSECURE=1): tokens and specs cross the network in the clear",
    )
    .option("--no-metrics", NO_METRICS_HELP)
    .addHelpText(
      "after",
      `
Flags override the CUBE_* environment variables. Ctrl-C (or SIGTERM) stops it gracefully.

On its first start the manager makes an admin token and a worker join token, stored hashed
in its data dir and written in clear to admin.token and worker.token there (mode 0600). It
writes its address and the admin token to the config file of the user who runs it
(~/.config/cube/config.json, or $CUBE_CONFIG), so client commands on this machine need no
flags, and prints how a worker joins.

The data dir is made mode 0700 (its files are the cluster's state and secrets); one that
another user owns or that group or others may write is refused (exit 2: chmod 700 it).

With --tls it serves TLS: on the first start it makes the cluster's CA (tls/ca.crt and
tls/ca.key, 0600, in its data dir) and its own certificate (renewed before it expires); the
config file then also names the CA. Worker join tokens carry the CA's SHA-256
(<secret>@sha256:<hex>), so a new worker trusts only that CA; workers get certificates of
their own when they join. Without --tls, a non-loopback address needs --insecure, and so
do the workers and clients that dial it there (cube worker --insecure, CUBE_INSECURE=1).

Examples:
  cube manager
  cube manager --listen 0.0.0.0:5555 --tls --data-dir /var/lib/cube
  cube manager --listen 0.0.0.0:5555 --insecure --data-dir /var/lib/cube --scheduler epvm
  cube manager --heartbeat-timeout 5s --down-grace 10s`,
    )
    .action((flags: ManagerFlags) => manager(io, flags));
}

/**
 * The manager's options from its flags, else its CUBE_* variables (a bad value is a usage
 * error naming it, exit 2), checked as the manager checks them (exported for tests).
 */
export async function managerOptions(flags: ManagerFlags, env: NodeJS.ProcessEnv) {
  // A bad CUBE_* value is the user's to fix: a CliError naming it (exit 2), not a crash.
  const fromEnv = (name: string, parse: (s: string) => number) => {
    try {
      return envSetting(env, name, parse);
    } catch (error) {
      throw usageError((error as Error).message);
    }
  };
  const age = (v: string) => parseEnvDuration(v, AGE_MAX_MS);
  const scheduler =
    flags.scheduler ?? (env.CUBE_SCHEDULER ? envScheduler(env.CUBE_SCHEDULER) : undefined);
  checkLogLevelEnv(env);
  const options = {
    listen: await checkListenAddress(
      flags.listen || env.CUBE_LISTEN || DEFAULT_MANAGER,
      flags.listen ? "--listen" : env.CUBE_LISTEN ? "CUBE_LISTEN" : "--listen",
    ),
    dataDir: flags.dataDir || env.CUBE_DATA_DIR || DEFAULT_MANAGER_DATA_DIR,
    scheduler,
    heartbeatIntervalMs:
      flags.heartbeatInterval ?? fromEnv("CUBE_HEARTBEAT_INTERVAL", parseEnvDuration),
    heartbeatTimeoutMs:
      flags.heartbeatTimeout ?? fromEnv("CUBE_HEARTBEAT_TIMEOUT", parseEnvDuration),
    downGraceMs: flags.downGrace ?? fromEnv("CUBE_DOWN_GRACE", parseEnvDuration),
    startupGraceMs: flags.startupGrace ?? fromEnv("CUBE_STARTUP_GRACE", parseEnvDuration),
    restartGraceMs: flags.restartGrace ?? fromEnv("CUBE_RESTART_GRACE", parseEnvDuration),
    assignmentResendMs:
      flags.assignmentResend ?? fromEnv("CUBE_ASSIGNMENT_RESEND", parseEnvDuration),
    assignmentWindow: flags.assignmentWindow ?? fromEnv("CUBE_ASSIGNMENT_WINDOW", parseWindow),
    shutdownTimeoutMs: flags.shutdownTimeout ?? fromEnv("CUBE_SHUTDOWN_TIMEOUT", parseEnvDuration),
    taskGcAfterMs: flags.taskGcAfter ?? fromEnv("CUBE_TASK_GC_AFTER", age),
    nodeGcAfterMs: flags.nodeGcAfter ?? fromEnv("CUBE_NODE_GC_AFTER", age),
    metrics: metricsWanted(flags.metrics, env),
    insecure: Boolean(flags.insecure) || envFlag(env, "CUBE_INSECURE") === true,
    tls: Boolean(flags.tls) || envFlag(env, "CUBE_TLS") === true,
  };
  await checkTimings(options, flags, env);
  return options;
}

async function manager(io: Io, flags: ManagerFlags): Promise<void> {
  const env = io.env;
  const options = await managerOptions(flags, env);
  const inUse = `cannot start the manager: ${options.listen} is in use: choose another with --listen`;
  if (!(await portFree(options.listen))) throw new CliError(inUse);
  let handle: ManagerHandle;
  try {
    // Loaded here, not at the top: client commands should not pay for LevelDB.
    const { runManagerProcess } = await import("../../manager/process.js");
    handle = await runManagerProcess(options);
  } catch (error) {
    const message = (error as Error).message ?? String(error);
    if (/EADDRINUSE/.test(`${message} ${(error as NodeJS.ErrnoException).code}`)) {
      throw new CliError(inUse);
    }
    throw startError("manager", error);
  }
  const [{ readToken }, { parseListen }] = await Promise.all([
    import("../../manager/index.js"),
    import("../../lib/rpc/server.js"),
  ]);
  const admin = await readToken(options.dataDir, "admin").catch(() => undefined);
  const join = await readToken(options.dataDir, "worker").catch(() => undefined);
  const ca = handle.ca ? resolve(handle.ca.file) : undefined;
  const config = admin
    ? await writeConfig(
        env,
        { manager: handle.address, token: admin, ...(ca ? { ca } : {}) },
        (warning) => io.stderr.write(`cube: warning: ${warning}\n`),
      )
    : undefined;
  io.stdout.write(
    `manager listening on ${handle.address}${handle.ca ? " (TLS)" : ""} (data in ${options.dataDir})\n`,
  );
  if (handle.ca) io.stdout.write(`cluster CA: ${ca} (sha256:${handle.ca.sha256})\n`);
  if (config) {
    io.stdout.write(`address, admin token${ca ? " and CA" : ""} written to ${config}\n`);
  }
  if (join) {
    // Over TLS the join token carries the CA's digest: a new worker trusts only that CA.
    const token = handle.ca ? joinToken(join, handle.ca.sha256) : join;
    // In plaintext off loopback, a worker dials only when told it may (as this manager was).
    const plain = !handle.ca && !isLoopback(parseListen(handle.address).host);
    io.stdout.write(
      `workers join with:\n  cube worker --manager ${handle.address} --token ${token}${plain ? " --insecure" : ""}\n`,
    );
  }
  // The process runner owns the rest: it exits on SIGINT/SIGTERM after a graceful close.
  await new Promise<never>(() => {});
}

/**
 * The manager's own check of its timings (manager/core/options.ts), its refusal a usage error
 * naming the flag, or the CUBE_* variable when that set it: the options module words it in
 * its option names, exit 1.
 */
async function checkTimings(
  options: Parameters<typeof import("../../manager/core/options.js").resolveOptions>[0],
  flags: ManagerFlags,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const { OptionsError, resolveOptions } = await import("../../manager/core/options.js");
  // Option → the flag that sets it (its value as given), and its variable.
  const sources: Record<string, [string, unknown, string]> = {
    heartbeatIntervalMs: [
      "--heartbeat-interval",
      flags.heartbeatInterval,
      "CUBE_HEARTBEAT_INTERVAL",
    ],
    heartbeatTimeoutMs: ["--heartbeat-timeout", flags.heartbeatTimeout, "CUBE_HEARTBEAT_TIMEOUT"],
    assignmentResendMs: ["--assignment-resend", flags.assignmentResend, "CUBE_ASSIGNMENT_RESEND"],
  };
  const named = (option: string) => {
    const source = sources[option];
    if (!source) return option;
    const [flag, given, variable] = source;
    // The flag when given, else the variable when set, else the flag (whose default it is).
    return given === undefined && env[variable] ? variable : flag;
  };
  try {
    resolveOptions(options);
  } catch (error) {
    if (error instanceof OptionsError) throw usageError(error.describe(named));
    throw error;
  }
}

/**
 * Whether nothing listens on `listen` yet (port 0 always is free). Asked before the manager
 * starts, which makes its data dir and first tokens before it listens: a port in use would
 * leave them behind. Only EADDRINUSE says no; any other trouble is left to the start to say.
 */
async function portFree(listen: string): Promise<boolean> {
  const [{ parseListen }, { createServer }] = await Promise.all([
    import("../../lib/rpc/server.js"),
    import("node:net"),
  ]);
  const { host, port } = parseListen(listen);
  if (port === 0) return true;
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", (error: NodeJS.ErrnoException) => resolve(error.code !== "EADDRINUSE"));
    probe.listen(port, host, () => probe.close(() => resolve(true)));
  });
}

/** A window of at least one assignment. */
function parseWindow(input: string): number {
  return parseCount(input, 1_000_000, 1);
}

function envScheduler(value: string): SchedulerName {
  try {
    return parseScheduler(value);
  } catch (error) {
    throw usageError(`CUBE_SCHEDULER: ${(error as Error).message}`);
  }
}
