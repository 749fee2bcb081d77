import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  AUTHORIZATION_HEADERS,
  repeatedAuthorization,
} from "../../lib/rpc/authorization-headers.js";
import type { Gate } from "../../lib/rpc/http-layer.js";
import { PEER_CERTIFICATE } from "../../lib/rpc/peer.js";
import { MANAGER_URI } from "../../lib/tls/identity.js";

/**
 * On a TLS worker, its own services (TaskService, MetricsService, health, reflection) answer
 * the manager only: the caller must present the manager's certificate (cube://manager, from
 * the cluster's CA). No certificate, or one that does not verify, is UNAUTHENTICATED; a good
 * certificate of someone else (another worker) is PERMISSION_DENIED. A gate of the worker's
 * server: decided from the connection and the headers before the body is read; the server
 * logs the refusals. GET /metrics is no RPC and stays readable, as on the manager (counts
 * only, no secrets).
 */
export function managerOnly(): Gate {
  return (call) => {
    const peer = call.values.get(PEER_CERTIFICATE);
    if (peer?.verified && peer.uris.includes(MANAGER_URI)) return;
    const procedure = `/${call.service.typeName}/${call.method.name}`;
    throw !peer
      ? new ConnectError(
          `${procedure}: a worker answers only its manager, which presents its certificate`,
          Code.Unauthenticated,
        )
      : !peer.verified
        ? new ConnectError(
            `client certificate refused (${peer.error}): not from this cluster's CA, or expired`,
            Code.Unauthenticated,
          )
        : new ConnectError(
            `${procedure}: a worker answers only its manager, not ${peer.uris.join(", ") || "this certificate"}`,
            Code.PermissionDenied,
          );
  };
}

const digest = (text: string) => createHash("sha256").update(text).digest();

/**
 * On a plaintext worker, the same rule by a secret instead of a certificate: the caller must
 * present "authorization: Bearer <secret>", the worker's call secret that it gave the
 * manager when it registered (Register.call_secret). Anything else is UNAUTHENTICATED. The
 * secret is compared by digest, in constant time.
 */
export function managerSecretOnly(secret: string): Gate {
  const wanted = digest(`Bearer ${secret}`);
  return (call) => {
    const given = call.requestHeader.get("authorization");
    const once = !repeatedAuthorization(call.values.get(AUTHORIZATION_HEADERS));
    if (once && given !== null && timingSafeEqual(digest(given), wanted)) return;
    throw new ConnectError(
      `/${call.service.typeName}/${call.method.name}: a worker answers only its manager, which presents the secret the worker gave it`,
      Code.Unauthenticated,
    );
  };
}
