import type { Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

/**
 * A gRPC transport (HTTP/2, h2c) to a cube server at host:port or a full URL. HTTP/2
 * pings notice a dead peer that never sent a FIN.
 */
export function grpcTransport(
  address: string,
  options: { pingIntervalMs?: number } = {},
): Transport {
  const baseUrl = /^https?:\/\//.test(address) ? address : `http://${address}`;
  return createGrpcTransport({
    baseUrl,
    pingIntervalMs: options.pingIntervalMs ?? 1000,
    pingTimeoutMs: 1000,
    // connect-node 2.1.2 can crash on an idle ping after the server began shutting down.
    pingIdleConnection: false,
  });
}
