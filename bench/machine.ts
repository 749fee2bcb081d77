import { readFileSync } from "node:fs";
import { availableParallelism, cpus, release, totalmem } from "node:os";
import type Docker from "dockerode";

/** The machine a run was made on, printed with the figures (they mean little without it). */
export interface Machine {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly docker: string;
  /** Whether the host is a virtual machine, and which hypervisor, when /proc/cpuinfo says. */
  readonly virtualized: boolean;
}

/** Describes this machine; the Docker version comes from the engine itself. */
export async function describeMachine(docker: Docker): Promise<Machine> {
  let dockerVersion = "unavailable";
  try {
    const v = await docker.version();
    dockerVersion = `${v.Version} (API ${v.ApiVersion})`;
  } catch (error) {
    dockerVersion = `unavailable: ${(error as Error).message}`;
  }
  let virtualized = false;
  try {
    virtualized = /\bhypervisor\b/.test(readFileSync("/proc/cpuinfo", "utf8"));
  } catch {
    // Not Linux: leave it unknown (false).
  }
  return {
    cpu: cpus()[0]?.model.trim() ?? "unknown",
    cores: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    docker: dockerVersion,
    virtualized,
  };
}

/** One line for people: "AMD EPYC, 2 cores, 23.5 GiB, Linux 6.1, Node v20.20.2, Docker 20.10.24". */
export function machineLine(m: Machine): string {
  return [
    `${m.cpu}${m.virtualized ? " (VM)" : ""}`,
    `${m.cores} cores`,
    `${m.memoryGiB} GiB RAM`,
    `Linux ${m.kernel}`,
    `Node ${m.node}`,
    `Docker ${m.docker}`,
  ].join(", ");
}
