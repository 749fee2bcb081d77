/**
 * Entry point of a bare manager process, configured from the environment (for tests that
 * spawn a real manager and kill -9 it): CUBE_LISTEN (default 127.0.0.1:5555, port 0 ok),
 * CUBE_DATA_DIR (required), CUBE_SCHEDULER, and CUBE_HEARTBEAT_INTERVAL,
 * CUBE_HEARTBEAT_TIMEOUT, CUBE_DOWN_GRACE, CUBE_STARTUP_GRACE, CUBE_RESTART_GRACE,
 * CUBE_ASSIGNMENT_RESEND, CUBE_SHUTDOWN_TIMEOUT, CUBE_TASK_GC_AFTER and CUBE_NODE_GC_AFTER in
 * milliseconds, and CUBE_ASSIGNMENT_WINDOW, CUBE_INSECURE=1 (plaintext on a non-loopback
 * address), CUBE_TLS=1 (TLS with the cluster's CA; CUBE_WORKER_CERT_TTL, in ms, how long
 * worker certificates last) and CUBE_AUTH=0 (no tokens: benchmarks' baseline only); switches
 * take 1, true, yes, on or 0, false, no, off, anything else exits 2. Prints
 * {"listening":"host:port"} on stdout once it serves. `cube manager` is the command for people.
 */
import { envSwitch } from "../lib/env-setting.js";
import type { SchedulerName } from "./core/placer.js";
import { runManagerProcess } from "./process.js";

function ms(name: string, what = "a number of milliseconds"): number | undefined {
  const value = process.env[name];
  if (!value) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) {
    process.stderr.write(`${name}: "${value}" is not ${what}\n`);
    process.exit(2);
  }
  return n;
}

/** A switch (1, true, yes, on / 0, false, no, off); anything else exits 2 naming it. */
function on(name: string): boolean | undefined {
  try {
    return envSwitch(process.env, name);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(2);
  }
}

const dataDir = process.env.CUBE_DATA_DIR;
if (!dataDir) {
  process.stderr.write("CUBE_DATA_DIR is required\n");
  process.exit(2);
}
try {
  const handle = await runManagerProcess({
    listen: process.env.CUBE_LISTEN || "127.0.0.1:5555",
    dataDir,
    scheduler: (process.env.CUBE_SCHEDULER || undefined) as SchedulerName | undefined,
    heartbeatIntervalMs: ms("CUBE_HEARTBEAT_INTERVAL"),
    heartbeatTimeoutMs: ms("CUBE_HEARTBEAT_TIMEOUT"),
    downGraceMs: ms("CUBE_DOWN_GRACE"),
    startupGraceMs: ms("CUBE_STARTUP_GRACE"),
    restartGraceMs: ms("CUBE_RESTART_GRACE"),
    assignmentResendMs: ms("CUBE_ASSIGNMENT_RESEND"),
    shutdownTimeoutMs: ms("CUBE_SHUTDOWN_TIMEOUT"),
    taskGcAfterMs: ms("CUBE_TASK_GC_AFTER"),
    nodeGcAfterMs: ms("CUBE_NODE_GC_AFTER"),
    assignmentWindow: ms("CUBE_ASSIGNMENT_WINDOW", "a number of assignments"),
    insecure: on("CUBE_INSECURE") === true,
    tls: on("CUBE_TLS") === true,
    workerCertificateMs: ms("CUBE_WORKER_CERT_TTL"),
    // Benchmarks compare with and without tokens; `cube manager` has no such switch.
    auth: on("CUBE_AUTH") ?? true,
  });
  process.stdout.write(`${JSON.stringify({ listening: handle.address })}\n`);
} catch (error) {
  process.stderr.write(`cannot start the manager: ${(error as Error).message}\n`);
  process.exit(1);
}
