import { envSetting, envSwitch } from "../lib/env-setting.js";
import { metricsFromEnv } from "../lib/metrics-env.js";
import { parseEnvDuration } from "../lib/parse-duration.js";
import type { ContainerPolicy } from "./docker/container-spec.js";
import { MAX_WARM_SANDBOXES } from "./docker/sandbox-pool.js";
import type { WorkerProcessOptions } from "./process.js";

/**
 * Parses "k=v,k=v" (or an array of "k=v") into labels; throws naming the bad entry.
 * Keys must be non-empty; values may be empty and may contain "=".
 */
export function parseLabels(input: string | readonly string[] | undefined): Record<string, string> {
  const entries = typeof input === "string" ? input.split(",") : [...(input ?? [])];
  const labels: [string, string][] = [];
  for (const raw of entries) {
    const entry = raw.trim();
    if (!entry) continue;
    const eq = entry.indexOf("=");
    if (eq <= 0) throw new Error(`label "${entry}" is not key=value`);
    labels.push([entry.slice(0, eq).trim(), entry.slice(eq + 1).trim()]);
  }
  // Every key its own, `__proto__` too (an assignment would set the prototype instead).
  return Object.fromEntries(labels);
}

/**
 * Every CUBE_* setting of a worker, as `cube worker` reads them under its flags (and the
 * test harness worker/main.ts alone): CUBE_MANAGER, CUBE_TOKEN, CUBE_CA (the cluster CA's
 * certificate file), CUBE_LISTEN, CUBE_INSECURE=1, CUBE_NAME, CUBE_DATA_DIR, CUBE_LABELS
 * (k=v,k=v), CUBE_DOCKER_HOST, the container policy's (see {@link policyFromEnv}),
 * CUBE_PULL_STALL_TIMEOUT, CUBE_RUNTIME_REQUEST_TIMEOUT and CUBE_SHUTDOWN_TIMEOUT ("10s", or
 * a bare number of ms), CUBE_WARM_SANDBOXES (a count), CUBE_SANDBOX_IMAGE, CUBE_METRICS=off. Switches take 1, true, yes, on or 0, false, no, off
 * (lib/env-setting.ts envSwitch). Unset ones are undefined (the worker's defaults); a bad one
 * throws, naming the variable.
 */
export function workerEnv(env: NodeJS.ProcessEnv): WorkerEnv {
  let labels: Record<string, string>;
  try {
    labels = parseLabels(env.CUBE_LABELS);
  } catch (error) {
    throw new Error(`CUBE_LABELS: ${(error as Error).message}`);
  }
  return {
    manager: env.CUBE_MANAGER || undefined,
    token: env.CUBE_TOKEN || undefined,
    ca: env.CUBE_CA || undefined,
    listen: env.CUBE_LISTEN || undefined,
    insecure: envSwitch(env, "CUBE_INSECURE") === true,
    name: env.CUBE_NAME || undefined,
    dataDir: env.CUBE_DATA_DIR || undefined,
    labels,
    dockerHost: env.CUBE_DOCKER_HOST || undefined,
    policy: policyFromEnv(env),
    pullStallMs: duration(env, "CUBE_PULL_STALL_TIMEOUT"),
    runtimeRequestTimeoutMs: duration(env, "CUBE_RUNTIME_REQUEST_TIMEOUT"),
    shutdownTimeoutMs: duration(env, "CUBE_SHUTDOWN_TIMEOUT"),
    ...sandboxesFromEnv(env),
    metrics: metricsFromEnv(env),
  };
}

/** What {@link workerEnv} reads: the worker's options, those with defaults left unset. */
export type WorkerEnv = Omit<WorkerProcessOptions, "manager" | "dataDir"> & {
  manager: string | undefined;
  dataDir: string | undefined;
};

/**
 * Worker options from the environment alone (worker/main.ts): {@link workerEnv} with
 * CUBE_MANAGER defaulting to 127.0.0.1:5555, CUBE_LISTEN to 127.0.0.1:5556, and
 * CUBE_DATA_DIR required.
 */
export function workerOptionsFromEnv(env: NodeJS.ProcessEnv): WorkerProcessOptions {
  const settings = workerEnv(env);
  const { dataDir } = settings;
  if (!dataDir) throw new Error("CUBE_DATA_DIR is required (the worker's data directory)");
  return {
    ...settings,
    manager: settings.manager ?? "127.0.0.1:5555",
    listen: settings.listen ?? "127.0.0.1:5556",
    dataDir,
  };
}

/**
 * CUBE_WARM_SANDBOXES (a count, 0–64) and CUBE_SANDBOX_IMAGE, as `cube worker` and `cube dev`
 * read them; unset ones are undefined (the worker's defaults); a bad count throws, naming it.
 */
export function sandboxesFromEnv(env: NodeJS.ProcessEnv): {
  warmSandboxes: number | undefined;
  sandboxImage: string | undefined;
} {
  return {
    warmSandboxes: envSetting(env, "CUBE_WARM_SANDBOXES", (value) =>
      wholeNumber(value, MAX_WARM_SANDBOXES),
    ),
    sandboxImage: env.CUBE_SANDBOX_IMAGE || undefined,
  };
}

function wholeNumber(text: string, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n > max)
    throw new Error(`"${text}" is not a whole number in 0–${max}`);
  return n;
}

function duration(env: NodeJS.ProcessEnv, name: string): number | undefined {
  return envSetting(env, name, (value) => parseEnvDuration(value));
}

/**
 * The container policy's overrides from CUBE_PIDS_LIMIT, CUBE_ALLOW_NEW_PRIVILEGES=1,
 * CUBE_CAP_DROP (comma-separated; empty drops none) and CUBE_ALLOW_REGISTRIES
 * (comma-separated); unset ones keep the defaults.
 */
export function policyFromEnv(env: NodeJS.ProcessEnv): Partial<ContainerPolicy> {
  const policy: { -readonly [K in keyof ContainerPolicy]?: ContainerPolicy[K] } = {};
  if (env.CUBE_PIDS_LIMIT !== undefined && env.CUBE_PIDS_LIMIT !== "") {
    const n = Number(env.CUBE_PIDS_LIMIT);
    if (!Number.isInteger(n) || n < 0) {
      throw new Error(`CUBE_PIDS_LIMIT: "${env.CUBE_PIDS_LIMIT}" is not a whole number ≥ 0`);
    }
    policy.pidsLimit = n;
  }
  if (envSwitch(env, "CUBE_ALLOW_NEW_PRIVILEGES") === true) policy.noNewPrivileges = false;
  if (env.CUBE_CAP_DROP !== undefined) policy.dropCapabilities = list(env.CUBE_CAP_DROP);
  if (env.CUBE_ALLOW_REGISTRIES) policy.allowedRegistries = list(env.CUBE_ALLOW_REGISTRIES);
  return policy;
}

function list(text: string): string[] {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}
