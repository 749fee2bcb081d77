import { create } from "@bufbuild/protobuf";
import { type PortMapping, PortMappingSchema, Protocol } from "../gen/cube/v1/task_pb.js";
import { protocolName } from "../lib/ports.js";

/**
 * Parses a port flag the way `docker run -p` reads it:
 * "80" (container port 80, host port chosen by Docker), "8080:80", "127.0.0.1:8080:80",
 * "[::1]:8080:80", each optionally followed by "/tcp" or "/udp". A host port of 0 also
 * lets Docker choose. Throws a message naming the input.
 */
export function parsePort(input: string): PortMapping {
  const m =
    /^(?:(?:\[([0-9a-fA-F:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):)?(?:(\d+):)?(\d+)(?:\/(tcp|udp))?$/i.exec(
      input.trim(),
    );
  if (!m) {
    throw new Error(
      `"${input}" is not a port: use [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/udp], e.g. 8080:80`,
    );
  }
  const hostIp = m[1] ?? m[2] ?? "";
  const containerPort = Number(m[4]);
  const hostPort = m[3] === undefined ? 0 : Number(m[3]);
  if (containerPort < 1 || containerPort > 65535) {
    throw new Error(`"${input}": container port ${containerPort} is not between 1 and 65535`);
  }
  if (hostPort > 65535) {
    throw new Error(`"${input}": host port ${hostPort} is not between 0 and 65535`);
  }
  return create(PortMappingSchema, {
    containerPort,
    hostPort,
    hostIp,
    protocol: m[5]?.toLowerCase() === "udp" ? Protocol.UDP : Protocol.TCP,
  });
}

/** A published or requested port as `docker ps` shows it: "127.0.0.1:8080->80/tcp". */
export function formatPort(port: {
  hostIp: string;
  hostPort: number;
  containerPort: number;
  protocol: Protocol;
}): string {
  const proto = protocolName(port.protocol);
  if (port.hostPort === 0) return `${port.containerPort}/${proto}`;
  const ip = port.hostIp.includes(":") ? `[${port.hostIp}]` : port.hostIp;
  return `${ip ? `${ip}:` : ""}${port.hostPort}->${port.containerPort}/${proto}`;
}
