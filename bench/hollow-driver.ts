/**
 * A driver without containers, for scale benchmarks (a thousand workers in one
 * process): starts succeed at once, containers "run" until stopped. Nothing is
 * allocated per task beyond one map entry. Like the Docker driver, it has a usage sample
 * of every running container at hand (made up: a sliver of cpu, a fixed memory use under
 * the task's limit), so a hollow worker's metrics carry as many task samples up the
 * stream as a real one's would.
 */
import { create } from "@bufbuild/protobuf";
import { PortBindingSchema, Protocol } from "../gen/cube/v1/task_pb.js";
import type {
  ContainerInfo,
  ContainerRequest,
  ContainerStats,
  Driver,
  ExitStatus,
} from "../worker/tasks/driver.js";

interface Hollow {
  readonly info: ContainerInfo;
  /** The container's memory limit (the task's request), bytes; 0 when none. */
  readonly memoryLimitBytes: bigint;
  resolve?: (status: ExitStatus) => void;
  exit?: Promise<ExitStatus>;
}

/** What every hollow container "uses": made-up, non-zero (zeros would shrink the messages). */
const HOLLOW_CPU_PERCENT = 0.5;
const HOLLOW_MEMORY_BYTES = 3n << 20n;

let fakePort = 40000;

/** A made-up host port, cycling through 40001–60000. */
function nextFakePort(): number {
  fakePort = fakePort >= 60000 ? 40001 : fakePort + 1;
  return fakePort;
}

/** Creates a hollow driver; its state lives and dies with the returned object. */
export function createHollowDriver(): Driver {
  const containers = new Map<string, Hollow>();
  const end = (id: string, exitCode: number) => {
    const hollow = containers.get(id);
    if (!hollow) return;
    containers.delete(id);
    hollow.resolve?.({ exitCode, reason: `exit code ${exitCode}`, finishedAtMs: Date.now() });
  };
  return {
    async pull() {},
    async start(request: ContainerRequest) {
      const containerId = `hollow-${request.taskId}-g${request.generation}`;
      const existing = containers.get(containerId);
      if (existing) return existing.info;
      const info: ContainerInfo = {
        containerId,
        taskId: request.taskId,
        generation: request.generation,
        running: true,
        ports: request.spec.ports.map((p) =>
          create(PortBindingSchema, {
            containerPort: p.containerPort,
            hostPort: p.hostPort || nextFakePort(),
            protocol: p.protocol || Protocol.TCP,
            hostIp: p.hostIp || "127.0.0.1",
          }),
        ),
        startedAtMs: Date.now(),
      };
      containers.set(containerId, {
        info,
        memoryLimitBytes: request.spec.resources?.memoryBytes ?? 0n,
      });
      return info;
    },
    wait(containerId: string) {
      const hollow = containers.get(containerId);
      if (!hollow) {
        return Promise.resolve({
          exitCode: -1,
          reason: "container is gone",
          finishedAtMs: Date.now(),
        });
      }
      hollow.exit ??= new Promise<ExitStatus>((resolve) => {
        hollow.resolve = resolve;
      });
      return hollow.exit;
    },
    async stop(containerId: string) {
      end(containerId, 143);
    },
    async destroy(containerId: string) {
      end(containerId, 137);
    },
    async inspect(containerId: string) {
      return containers.get(containerId)?.info;
    },
    stats() {
      const timeMs = Date.now();
      return Array.from(
        containers.values(),
        (hollow): ContainerStats => ({
          containerId: hollow.info.containerId,
          cpuPercent: HOLLOW_CPU_PERCENT,
          memoryUsedBytes: HOLLOW_MEMORY_BYTES,
          memoryLimitBytes: hollow.memoryLimitBytes,
          timeMs,
        }),
      );
    },
    logs: async function* () {},
    recover: async () => [],
    async close() {},
  };
}
