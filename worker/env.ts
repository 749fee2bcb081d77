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
 * 127.0.0.1:5555), CUBE_LISTEN (default 127.0.0.1:5556), CUBE_NAME, CUBE_DATA_DIR
 * (required), CUBE_LABELS, CUBE_DOCKER_HOST. Flags of `cube worker` override these.
 */
export function workerOptionsFromEnv(env: NodeJS.ProcessEnv): WorkerOptions {
  const dataDir = env.CUBE_DATA_DIR;
  if (!dataDir) throw new Error("CUBE_DATA_DIR is required (the worker's data directory)");
  return {
    manager: env.CUBE_MANAGER || "127.0.0.1:5555",
    listen: env.CUBE_LISTEN || "127.0.0.1:5556",
    name: env.CUBE_NAME || undefined,
    dataDir,
    labels: parseLabels(env.CUBE_LABELS),
    dockerHost: env.CUBE_DOCKER_HOST || undefined,
  };
}
