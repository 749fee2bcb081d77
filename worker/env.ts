import type { ContainerPolicy } from "./docker/container-spec.js";
import type { WorkerOptions } from "./index.js";

/**
 * Parses "k=v,k=v" (or an array of "k=v") into labels; throws naming the bad entry.
 * Keys must be non-empty; values may be empty and may contain "=".
 */
export function parseLabels(input: string | readonly string[] | undefined): Record<string, string> {
  const entries = typeof input === "string" ? input.split(",") : [...(input ?? [])];
  const labels: Record<string, string> = {};
  for (const raw of entries) {
    const entry = raw.trim();
    if (!entry) continue;
    const eq = entry.indexOf("=");
    if (eq <= 0) throw new Error(`label "${entry}" is not key=value`);
    labels[entry.slice(0, eq).trim()] = entry.slice(eq + 1).trim();
  }
  return labels;
}

/**
 * Worker options from CUBE_* environment variables: CUBE_MANAGER (default
 * 127.0.0.1:5555), CUBE_TOKEN, CUBE_CA (the cluster CA's certificate file), CUBE_LISTEN
 * (default 127.0.0.1:5556), CUBE_NAME, CUBE_DATA_DIR (required), CUBE_LABELS,
 * CUBE_DOCKER_HOST. Flags of `cube worker` override these.
 */
export function workerOptionsFromEnv(env: NodeJS.ProcessEnv): WorkerOptions {
  const dataDir = env.CUBE_DATA_DIR;
  if (!dataDir) throw new Error("CUBE_DATA_DIR is required (the worker's data directory)");
  return {
    manager: env.CUBE_MANAGER || "127.0.0.1:5555",
    token: env.CUBE_TOKEN || undefined,
    ca: env.CUBE_CA || undefined,
    listen: env.CUBE_LISTEN || "127.0.0.1:5556",
    name: env.CUBE_NAME || undefined,
    dataDir,
    labels: parseLabels(env.CUBE_LABELS),
    dockerHost: env.CUBE_DOCKER_HOST || undefined,
    policy: policyFromEnv(env),
  };
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
  if (env.CUBE_ALLOW_NEW_PRIVILEGES === "1") policy.noNewPrivileges = false;
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
