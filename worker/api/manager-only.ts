import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "../../lib/logger.js";
import {
  AUTHORIZATION_HEADERS,
  repeatedAuthorization,
} from "../../lib/rpc/authorization-headers.js";
import { PEER_CERTIFICATE } from "../../lib/rpc/peer.js";
import { MANAGER_URI } from "../../lib/tls/identity.js";

/**
 * On a TLS worker, its own services (TaskService, MetricsService, health, reflection) answer
 * the manager only: the caller must present the manager's certificate (cube://manager, from
 * the cluster's CA). No certificate, or one that does not verify, is UNAUTHENTICATED; a good
 * certificate of someone else (another worker) is PERMISSION_DENIED. Refusals are logged.
 * GET /metrics is no RPC and stays readable, as on the manager (counts only, no secrets).
 */
export function managerOnly(logger: Logger): Interceptor {
  return (next) => (req) => {
    const peer = req.contextValues.get(PEER_CERTIFICATE);
    if (peer?.verified && peer.uris.includes(MANAGER_URI)) return next(req);
    const procedure = `/${req.service.typeName}/${req.method.name}`;
    const error = !peer
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
    logger.warn(
      {
        procedure,
        code: Code[error.code],
        ...(peer ? { certificate: peer.fingerprint, names: peer.uris } : {}),
      },
      "call refused",
    );
    throw error;
  };
}

const digest = (text: string) => createHash("sha256").update(text).digest();

/**
 * On a plaintext worker, the same rule by a secret instead of a certificate: the caller must
 * present "authorization: Bearer <secret>", the worker's call secret that it gave the
 * manager when it registered (Register.call_secret). Anything else is UNAUTHENTICATED, and
 * logged. The secret is compared by digest, in constant time.
 */
export function managerSecretOnly(secret: string, logger: Logger): Interceptor {
  const wanted = digest(`Bearer ${secret}`);
  return (next) => (req) => {
    const given = req.header.get("authorization");
    const once = !repeatedAuthorization(req.contextValues.get(AUTHORIZATION_HEADERS));
    if (once && given !== null && timingSafeEqual(digest(given), wanted)) return next(req);
    const procedure = `/${req.service.typeName}/${req.method.name}`;
    logger.warn({ procedure, authorization: given === null ? "none" : "wrong" }, "call refused");
    throw new ConnectError(
      `${procedure}: a worker answers only its manager, which presents the secret the worker gave it`,
      Code.Unauthenticated,
    );
  };
}
