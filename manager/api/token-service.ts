import { durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Role, TokenService } from "../../gen/cube/v1/token_service_pb.js";
import { quote } from "../../lib/quote.js";
import { joinToken } from "../../lib/tls/identity.js";
import type { ControlPlane } from "../core/control-plane.js";
import { WORKER_ID } from "../rules/validate-register.js";
import { CALLER } from "./authorization.js";
import type { ClusterTls } from "./cluster-tls.js";

/** Longest a token may be made for: ten years (longer is "until revoked": leave ttl unset). */
const MAX_TTL_MS = 10 * 365 * 24 * 3600 * 1000;
const NAME = /^[\x20-\x7e]{1,64}$/;

/**
 * The manager's TokenService: create (the secret is answered once and stored only as its
 * SHA-256), list (never a secret), revoke (effective at once). Admin only (authorization.ts).
 * Workers join (and, with `tls`, get and renew their certificates) with worker tokens.
 */
export function tokenServiceRoutes(
  cp: ControlPlane,
  tls?: ClusterTls,
): (router: ConnectRouter) => void {
  /** A certificate for `workerId`'s request; INVALID_ARGUMENT saying what is wrong with it. */
  const certify = async (workerId: string, csr: Uint8Array) => {
    if (!tls) throw new Error("no TLS");
    try {
      return await tls.issueWorker(workerId, csr);
    } catch (error) {
      throw new ConnectError(`csr: ${(error as Error).message}`, Code.InvalidArgument);
    }
  };
  /**
   * Worker ids whose JoinWorker is under way: the id is checked before the CSR is signed (an
   * await) and its credential made after, so a second join of the same id must not get in
   * between and come out with a credential too.
   */
  const joining = new Set<string>();
  return (router) =>
    router.service(TokenService, {
      async createToken(req) {
        if (!NAME.test(req.name)) {
          throw new ConnectError("name: 1-64 printable ASCII characters", Code.InvalidArgument);
        }
        if (req.role === Role.UNSPECIFIED || Role[req.role] === undefined) {
          throw new ConnectError("role: read, operator, admin or worker", Code.InvalidArgument);
        }
        if (req.ttl) {
          const ms = durationMs(req.ttl);
          if (!(ms > 0) || ms > MAX_TTL_MS) {
            throw new ConnectError("ttl: above 0 and at most 10 years", Code.InvalidArgument);
          }
        }
        const { record, secret } = cp.tokens.create(req.name, req.role, req.ttl, cp.clock.now());
        cp.store.putToken(record);
        await cp.committed();
        cp.logger.info({ token: record.token?.id, role: Role[req.role] }, "token created");
        // A worker token, on a TLS cluster, also comes with the CA's digest for new workers.
        const join = tls && req.role === Role.WORKER ? joinToken(secret, tls.caSha256) : "";
        return { token: record.token, secret, joinToken: join };
      },
      listTokens() {
        return { tokens: cp.tokens.list() };
      },
      async joinWorker(req, ctx) {
        // Who may join is decided with every other call (authorization.ts: a join token);
        // no caller means a manager without tokens, where workers connect without joining.
        const caller = CALLER.get(ctx.signal);
        if (!caller) {
          throw new ConnectError(
            "JoinWorker needs a manager with tokens: this one runs without them, and its workers connect without joining",
            Code.FailedPrecondition,
          );
        }
        if (!WORKER_ID.test(req.workerId)) {
          throw new ConnectError(
            "worker_id: 1-128 letters, digits, '-', '_' or '.'",
            Code.InvalidArgument,
          );
        }
        if (tls && req.csr.length === 0) {
          throw new ConnectError(
            "csr: required: this manager serves TLS, and a worker's stream needs a certificate (send a PKCS#10 request for the worker's key)",
            Code.InvalidArgument,
          );
        }
        const existing = cp.tokens.boundTo(req.workerId, cp.clock.now());
        if (existing) {
          cp.logger.warn(
            { worker: req.workerId, joinToken: caller.id },
            "refused a join: the worker id already has a credential",
          );
          throw new ConnectError(
            `worker "${req.workerId}" has already joined (credential ${existing.id}): revoke it (cube token revoke ${existing.id}) to let a worker join under that id again`,
            Code.PermissionDenied,
          );
        }
        if (joining.has(req.workerId)) {
          cp.logger.warn(
            { worker: req.workerId, joinToken: caller.id },
            "refused a join: another join of the worker id is under way",
          );
          throw new ConnectError(
            `worker "${req.workerId}" is joining on another call right now: one worker id gets one credential`,
            Code.Aborted,
          );
        }
        // Reserved until its credential exists (or the join failed): from then on boundTo
        // answers for it.
        joining.add(req.workerId);
        let issued: Awaited<ReturnType<typeof certify>> | undefined;
        let made: ReturnType<typeof cp.tokens.create>;
        try {
          // The request is checked before any credential is made.
          issued = tls ? await certify(req.workerId, req.csr) : undefined;
          made = cp.tokens.create(
            `worker ${req.workerId}`,
            Role.WORKER,
            undefined,
            cp.clock.now(),
            req.workerId,
          );
        } finally {
          joining.delete(req.workerId);
        }
        const { record, secret } = made;
        cp.store.putToken(record);
        await cp.committed();
        cp.logger.info(
          {
            worker: req.workerId,
            token: record.token?.id,
            joinToken: caller.id,
            ...(issued ? { certificateUntil: issued.notAfter } : {}),
          },
          "worker joined",
        );
        return {
          token: record.token,
          secret,
          certificate: issued?.certificate,
          caCertificate: issued?.caCertificate,
        };
      },
      async renewWorkerCertificate(req, ctx) {
        // authorization.ts checked the credential is a worker's own and, over TLS, that the
        // connection's certificate names the same worker.
        const caller = CALLER.get(ctx.signal);
        if (!caller) {
          throw new ConnectError(
            "RenewWorkerCertificate needs a manager with tokens: this one runs without them",
            Code.FailedPrecondition,
          );
        }
        if (!tls) {
          throw new ConnectError(
            "this manager does not serve TLS: workers have no certificates to renew",
            Code.FailedPrecondition,
          );
        }
        const issued = await certify(caller.workerId, req.csr);
        cp.logger.info(
          { worker: caller.workerId, certificateUntil: issued.notAfter },
          "worker certificate renewed",
        );
        return { certificate: issued.certificate, caCertificate: issued.caCertificate };
      },
      async revokeToken(req) {
        // Nobody could make or revoke tokens again: only a manager restart would mend it.
        const admins = cp.tokens.liveAdmins(cp.clock.now());
        if (admins.length === 1 && admins[0]?.id === req.id) {
          throw new ConnectError(
            `token ${quote(req.id)} is the last admin token that works: revoking it would leave nobody able to manage tokens; create another first (cube token create --role admin --name NAME)`,
            Code.FailedPrecondition,
          );
        }
        const record = cp.tokens.revoke(req.id);
        if (!record) throw new ConnectError(`token ${quote(req.id)} not found`, Code.NotFound);
        cp.store.putToken(record);
        await cp.committed();
        cp.logger.info({ token: req.id }, "token revoked");
        return { token: record.token };
      },
    });
}
