/**
 * A driver without containers, for scale benchmarks (a thousand workers in one
 * process): starts succeed at once, containers "run" until stopped. Nothing is
 * allocated per task beyond one map entry.
 */
import { create } from "@bufbuild/protobuf";
import { PortBindingSchema, Protocol } from "../gen/cube/v1/task_pb.js";
import type {
  ContainerInfo,
  ContainerRequest,
  Driver,
  ExitStatus,
} from "../worker/tasks/driver.js";

interface Hollow {
  readonly info: ContainerInfo;
  resolve?: (status: ExitStatus) => void;
  exit?: Promise<ExitStatus>;
}

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
      containers.set(containerId, { info });
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
    stats: () => [],
    logs: async function* () {},
    recover: async () => [],
    async close() {},
  };
}
