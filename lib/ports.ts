import { Protocol } from "../gen/cube/v1/task_pb.js";

/** A protocol as Docker and people write it after a port: "tcp" (the default) or "udp". */
export function protocolName(protocol: Protocol): "tcp" | "udp" {
  return protocol === Protocol.UDP ? "udp" : "tcp";
}

/** A published host port as "8080/tcp": what two tasks on one worker cannot both hold. */
export function hostPortKey(port: { readonly hostPort: number; readonly protocol: Protocol }) {
  return `${port.hostPort}/${protocolName(port.protocol)}`;
}
