import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import {
  type PortMapping,
  type RestartMode,
  type TaskSpec,
  TaskSpecSchema,
} from "../gen/cube/v1/task_pb.js";
import { toRecord } from "./parse-key-value.js";

/** The task-shaping flags of `cube run`, already parsed. */
export interface RunFlags {
  name?: string;
  env?: readonly (readonly [string, string])[];
  secretEnv?: readonly (readonly [string, string])[];
  port?: readonly PortMapping[];
  cpu?: number;
  memory?: bigint;
  disk?: bigint;
  healthPath?: string;
  /** Milliseconds after the start in which failed checks do not count. */
  healthStartPeriod?: number;
  restart?: RestartMode;
  maxRestarts?: number;
  /** Milliseconds a stop waits after SIGTERM before SIGKILL. */
  stopTimeout?: number;
  label?: readonly (readonly [string, string])[];
}

/** Names of the {@link RunFlags} as typed on the command line, for messages. */
export const RUN_FLAG_NAMES: Record<keyof RunFlags, string> = {
  name: "--name",
  env: "--env",
  secretEnv: "--secret-env",
  port: "--port",
  cpu: "--cpu",
  memory: "--memory",
  disk: "--disk",
  healthPath: "--health-path",
  healthStartPeriod: "--health-start-period",
  restart: "--restart",
  maxRestarts: "--max-restarts",
  stopTimeout: "--stop-timeout",
  label: "--label",
};

/**
 * Builds the TaskSpec `cube run IMAGE [-- ARGS…]` asks for. ARGS replace the image's CMD,
 * as with `docker run`. Throws a message naming the flag when a value cannot work.
 */
export function buildSpec(image: string, args: readonly string[], flags: RunFlags): TaskSpec {
  if (image.trim() === "") throw new Error("IMAGE must not be empty");
  if (flags.healthPath !== undefined && !flags.healthPath.startsWith("/")) {
    throw new Error(`--health-path "${flags.healthPath}" must start with "/", e.g. /health`);
  }
  if (flags.healthStartPeriod !== undefined && flags.healthPath === undefined) {
    throw new Error("--health-start-period needs a --health-path: it delays that check's verdict");
  }
  if (flags.healthPath !== undefined && (flags.port ?? []).length === 0) {
    throw new Error("--health-path needs a --port: the check is made on a published port");
  }
  const hasRestart = flags.restart !== undefined || flags.maxRestarts !== undefined;
  const hasResources =
    flags.cpu !== undefined || flags.memory !== undefined || flags.disk !== undefined;
  return create(TaskSpecSchema, {
    name: flags.name ?? "",
    image,
    args: [...args],
    env: toRecord(flags.env ?? []),
    secretEnv: toRecord(flags.secretEnv ?? []),
    ports: [...(flags.port ?? [])],
    labels: toRecord(flags.label ?? []),
    resources: hasResources
      ? { cpu: flags.cpu ?? 0, memoryBytes: flags.memory ?? 0n, diskBytes: flags.disk ?? 0n }
      : undefined,
    restartPolicy: hasRestart
      ? { mode: flags.restart, maxRestarts: flags.maxRestarts ?? 0 }
      : undefined,
    healthCheck:
      flags.healthPath !== undefined
        ? {
            path: flags.healthPath,
            startPeriod:
              flags.healthStartPeriod !== undefined
                ? durationFromMs(flags.healthStartPeriod)
                : undefined,
          }
        : undefined,
    stopTimeout: flags.stopTimeout !== undefined ? durationFromMs(flags.stopTimeout) : undefined,
  });
}

/** Which of the task-shaping flags were given: they cannot be combined with -f. */
export function givenSpecFlags(flags: RunFlags): string[] {
  return (Object.keys(RUN_FLAG_NAMES) as (keyof RunFlags)[])
    .filter((k) => {
      const v = flags[k];
      return Array.isArray(v) ? v.length > 0 : v !== undefined;
    })
    .map((k) => RUN_FLAG_NAMES[k]);
}
