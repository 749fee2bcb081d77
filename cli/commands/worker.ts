import { Command } from "commander";
import { parseDuration } from "../../lib/parse-duration.js";
import {
  DEFAULT_SANDBOX_IMAGE,
  DEFAULT_WARM_SANDBOXES,
  MAX_WARM_SANDBOXES,
} from "../../worker/docker/sandbox-pool.js";
import type { WorkerHandle } from "../../worker/index.js";
import { parseCapability } from "../capabilities.js";
import { startError, usageError } from "../cli-error.js";
import { DEFAULT_MANAGER, givenSetting } from "../client.js";
import { arg, collect } from "../client-options.js";
import type { Io } from "../io.js";
import { checkLogLevelEnv } from "../log-level.js";
import { checkListenAddress, checkManagerAddress } from "../manager-address.js";
import { NO_METRICS_HELP } from "../metrics-flag.js";
import { parseCount } from "../parse-enum.js";
import { parseKeyValue, toRecord } from "../parse-key-value.js";

interface WorkerFlags {
  manager?: string;
  token?: string;
  ca?: string;
  listen?: string;
  name?: string;
  dataDir?: string;
  label?: [string, string][];
  dockerHost?: string;
  pidsLimit?: number;
  allowNewPrivileges?: boolean;
  capDrop?: string[];
  allowRegistry?: string[];
  metrics?: boolean;
  insecure?: boolean;
  shutdownTimeout?: number;
  pullStallTimeout?: number;
  runtimeRequestTimeout?: number;
  warmSandboxes?: number;
  sandboxImage?: string;
}

/** Where a worker keeps its data when neither --data-dir nor CUBE_DATA_DIR says. */
export const DEFAULT_WORKER_DATA_DIR = "./.cube/worker";

/** `cube worker`: a node agent that joins a manager and runs containers on this Docker. */
export function workerCommand(io: Io): Command {
  return new Command("worker")
    .description("run a worker: joins the manager and runs its tasks on the local Docker engine")
    .option(
      "--manager <host:port>",
      `manager to join (env CUBE_MANAGER, default ${DEFAULT_MANAGER})`,
    )
    .option(
      "--token <token>",
      "join token (role worker) from the manager (env CUBE_TOKEN): printed by `cube manager`, in its data dir's worker.token, or made by `cube token create --role worker`",
    )
    .option(
      "--ca <file>",
      "the cluster CA's certificate, for a TLS manager when the join token carries no CA digest (env CUBE_CA)",
    )
    .option(
      "--listen <host:port>",
      "address of the worker's own gRPC server (env CUBE_LISTEN, default 127.0.0.1:5556; port 0 picks one)",
    )
    .option("--name <name>", "name for people (env CUBE_NAME, default the host name)")
    .option(
      "--data-dir <dir>",
      `where the worker keeps its state (env CUBE_DATA_DIR, default ${DEFAULT_WORKER_DATA_DIR})`,
    )
    .option(
      "--label <key=value>",
      "label the worker (repeatable; env CUBE_LABELS=k=v,k=v)",
      collect((s) => parseKeyValue(s, "label")),
    )
    .option(
      "--docker-host <url>",
      "Docker engine (env CUBE_DOCKER_HOST or DOCKER_HOST, default the local socket)",
    )
    .option(
      "--insecure",
      "accept plaintext off loopback when the manager has no TLS (env CUBE_INSECURE=1): dial a --manager that is not loopback and serve a non-loopback --listen in the clear; anyone on the network can read the join token, the credential, and this worker's tasks and logs",
    )
    .option(
      "--shutdown-timeout <duration>",
      "how long SIGINT/SIGTERM waits for the worker to tell the manager and close before it exits 1 anyway; containers keep running either way (env CUBE_SHUTDOWN_TIMEOUT, default 10s)",
      arg(parseDuration),
    )
    .option(
      "--pull-stall-timeout <duration>",
      "cancel an image pull that shows no progress for this long and fail its task, 0 to wait for good (env CUBE_PULL_STALL_TIMEOUT, default 1m)",
      arg(parseDuration),
    )
    .option(
      "--runtime-request-timeout <duration>",
      "abandon any other call to Docker (create, start, stop past its grace, remove…) unanswered for this long, and try it again, 0 to wait for good (env CUBE_RUNTIME_REQUEST_TIMEOUT, default 2m)",
      arg(parseDuration),
    )
    .option(
      "--warm-sandboxes <n>",
      `network sandboxes kept ready: a task that publishes no port joins one and starts without Docker building its network, about half of a start; 0 for none (env CUBE_WARM_SANDBOXES, default ${DEFAULT_WARM_SANDBOXES})`,
      arg((s) => parseCount(s, MAX_WARM_SANDBOXES)),
    )
    .option(
      "--sandbox-image <image>",
      `image the network sandboxes run; it must sleep for good (env CUBE_SANDBOX_IMAGE, default ${DEFAULT_SANDBOX_IMAGE}, built by scripts/setup.sh)`,
    )
    .option("--no-metrics", NO_METRICS_HELP)
    .option(
      "--pids-limit <n>",
      "processes a container may hold, 0 for no limit (env CUBE_PIDS_LIMIT, default 1024)",
      arg((s) => parseCount(s, 4_194_304)),
    )
    .option(
      "--allow-new-privileges",
      "let setuid binaries in containers gain privileges (env CUBE_ALLOW_NEW_PRIVILEGES=1; default: no-new-privileges)",
    )
    .option(
      "--cap-drop <cap>",
      "capability dropped from Docker's defaults (repeatable; env CUBE_CAP_DROP=a,b; default NET_RAW; --cap-drop none keeps all)",
      collect((s) => parseCapability(s, true)),
    )
    .option(
      "--allow-registry <host>",
      "registry images may come from, e.g. 127.0.0.1:5000 or docker.io (repeatable; env CUBE_ALLOW_REGISTRIES=a,b; default: any)",
      collect((s) => s.trim()),
    )
    .addHelpText(
      "after",
      `
Containers run hardened by default: no-new-privileges, a pids limit, Docker's capabilities
minus NET_RAW, ports published on 127.0.0.1 unless a task names a host IP. These flags relax
or tighten that for this worker only; no task spec can.

Flags override the CUBE_* environment variables. Ctrl-C (or SIGTERM) leaves gracefully:
containers keep running, and the next start with the same --data-dir adopts them again.
The data dir is made mode 0700 (it holds the worker's credential and keys); one that another
user owns or that group or others may write is refused (exit 2: chmod 700 it).

A TLS manager's join tokens end in @sha256:<CA digest>: the worker trusts the manager only if
its CA has that digest, then keeps the CA, a key of its own and the certificate it gets in its
data dir (tls/), dials with mTLS, renews the certificate before it expires, and serves its own
port with TLS, answering the manager alone. A token without the digest needs --ca. Without
TLS, a --manager or a --listen that is not loopback (127.0.0.0/8, ::1, localhost) needs
--insecure.

Examples:
  cube worker
  cube worker --manager 10.0.0.5:5555 --token cube_…@sha256:… --listen 0.0.0.0:5556 --label zone=a
  cube worker --manager 10.0.0.5:5555 --token cube_… --listen 0.0.0.0:5556 --insecure
  cube worker --name w2 --listen 127.0.0.1:5557 --data-dir ./.cube/w2`,
    )
    .action((flags: WorkerFlags) => worker(io, flags));
}

async function worker(io: Io, flags: WorkerFlags): Promise<void> {
  // Loaded here, not at the top: client commands should not pay for Docker and LevelDB.
  const [{ workerEnv }, { runWorkerProcess }] = await Promise.all([
    import("../../worker/env.js"),
    import("../../worker/process.js"),
  ]);
  const env = io.env;
  let fromEnv: ReturnType<typeof workerEnv>;
  try {
    fromEnv = workerEnv(env);
  } catch (error) {
    // A bad CUBE_* value is a bad setting, as a bad flag would be.
    throw usageError((error as Error).message);
  }
  checkLogLevelEnv(env);
  // Checked at start-up, as --cap-drop is: Docker refuses an unknown capability only when a
  // container is created, failing every task.
  for (const cap of fromEnv.policy?.dropCapabilities ?? []) {
    try {
      parseCapability(cap);
    } catch (error) {
      throw usageError(`CUBE_CAP_DROP: ${(error as Error).message}`);
    }
  }
  // Flags over the CUBE_* variables (read the same way as worker/main.ts reads them). Where to
  // join and with what are refused empty, as for client commands: an unset variable in
  // `--token "$JOIN"` must not fall back to another token.
  const options = {
    ...fromEnv,
    manager: checkManagerAddress(
      givenSetting(flags.manager, "--manager", env, "CUBE_MANAGER") ?? DEFAULT_MANAGER,
      flags.manager,
      env,
    ),
    token: givenSetting(flags.token, "--token", env, "CUBE_TOKEN"),
    ca: givenSetting(flags.ca, "--ca", env, "CUBE_CA"),
    listen: await checkListenAddress(
      flags.listen || fromEnv.listen || "127.0.0.1:5556",
      flags.listen ? "--listen" : fromEnv.listen ? "CUBE_LISTEN" : "--listen",
    ),
    insecure: flags.insecure || fromEnv.insecure,
    name: flags.name || fromEnv.name,
    dataDir: flags.dataDir || fromEnv.dataDir || DEFAULT_WORKER_DATA_DIR,
    labels: { ...fromEnv.labels, ...toRecord(flags.label ?? []) },
    dockerHost: flags.dockerHost || fromEnv.dockerHost,
    policy: {
      ...fromEnv.policy,
      ...(flags.pidsLimit !== undefined ? { pidsLimit: flags.pidsLimit } : {}),
      ...(flags.allowNewPrivileges ? { noNewPrivileges: false } : {}),
      ...(flags.capDrop ? { dropCapabilities: flags.capDrop.filter((c) => c !== "NONE") } : {}),
      ...(flags.allowRegistry ? { allowedRegistries: flags.allowRegistry } : {}),
    },
    pullStallMs: flags.pullStallTimeout ?? fromEnv.pullStallMs,
    runtimeRequestTimeoutMs: flags.runtimeRequestTimeout ?? fromEnv.runtimeRequestTimeoutMs,
    warmSandboxes: flags.warmSandboxes ?? fromEnv.warmSandboxes,
    sandboxImage: flags.sandboxImage || fromEnv.sandboxImage,
    metrics: flags.metrics !== false && fromEnv.metrics,
    shutdownTimeoutMs: flags.shutdownTimeout ?? fromEnv.shutdownTimeoutMs,
  };
  let handle: WorkerHandle;
  try {
    handle = await runWorkerProcess(options);
  } catch (error) {
    throw startError("worker", error);
  }
  io.stdout.write(
    `worker ${handle.id} listening on ${handle.address}, joining the manager at ${options.manager} (data in ${options.dataDir})\n`,
  );
  // The process runner owns the rest: it exits on SIGINT/SIGTERM after a graceful close.
  await new Promise<never>(() => {});
}
