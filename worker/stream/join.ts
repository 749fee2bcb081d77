import { X509Certificate } from "node:crypto";
import { EventEmitter } from "node:events";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { type DetailedPeerCertificate, connect as tlsConnect } from "node:tls";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { TokenService } from "../../gen/cube/v1/token_service_pb.js";
import type { Logger } from "../../lib/logger.js";
import { grpcTransport } from "../../lib/rpc/client.js";
import { parseListen, type ServerTls } from "../../lib/rpc/server.js";
import { writeSecretFile } from "../../lib/secret-file.js";
import { type ClientTls, MANAGER_URI, parseJoinToken, sanUris } from "../../lib/tls/identity.js";
import {
  certDerToPem,
  createCsr,
  fingerprint,
  keyToPem,
  newKeyPair,
  renewalDue,
  validity,
} from "../../lib/tls/pki.js";

/** Where a worker keeps its own credential (mode 0600). */
export const CREDENTIAL_FILE = "credential";
/** The cluster CA it trusts, once joined over TLS. */
export const CA_FILE = join("tls", "ca.crt");
/** Its private key and certificate, in one file (mode 0600), so they never disagree. */
export const CERT_FILE = join("tls", "worker.pem");

/** How often a worker at most looks at its certificate's age. */
const CHECK_AT_MOST_EVERY_MS = 3600_000;

/** What a worker presents when it dials the manager. */
export interface Dial {
  /** Its credential (bearer), or undefined against a manager without auth. */
  readonly token: string | undefined;
  /** TLS towards the manager (the CA, its certificate and key), or undefined: plaintext. */
  readonly tls: ClientTls | undefined;
}

/** What {@link WorkerIdentity.open} needs. */
export interface WorkerIdentityOptions {
  /** The manager's host:port. */
  readonly manager: string;
  readonly dataDir: string;
  readonly workerId: string;
  /**
   * A join token (role worker), possibly carrying the CA's digest (`<secret>@sha256:<hex>`);
   * or the worker's own credential.
   */
  readonly token: string | undefined;
  /** The cluster CA's certificate (PEM), given by the operator (--ca): overrides the stored one. */
  readonly ca?: string;
  readonly logger: Logger;
}

/**
 * A worker's identity towards the manager, kept in its data directory: its credential
 * (`credential`, a worker token bound to its id) and, on a TLS cluster, the CA it trusts
 * (`tls/ca.crt`) and its key and certificate (`tls/worker.pem`, 0600).
 *
 * The first dial joins (TokenService.JoinWorker with the join token and a PKCS#10 request for
 * a key made here, which never leaves the worker); later dials present what was kept, and a
 * certificate in the last third of its life is renewed first (RenewWorkerCertificate, over
 * mTLS with the current one), also on a timer while the stream stays up. TLS is on when the
 * worker has a CA: given (--ca), kept from an earlier join, or pinned by the join token's
 * digest, in which case the CA the manager presents is trusted only if its SHA-256 matches.
 *
 * Emits "certificate" when it has a new certificate (its own server presents it).
 */
export class WorkerIdentity extends EventEmitter<{ certificate: [] }> {
  readonly #o: WorkerIdentityOptions;
  readonly #secret: string | undefined;
  readonly #pinned: string | undefined;
  #credential: string | undefined;
  #ca: string | undefined;
  #key: string | undefined;
  #cert: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #started = false;
  #closed = false;

  private constructor(options: WorkerIdentityOptions) {
    super();
    this.#o = options;
    const parsed = options.token ? parseJoinToken(options.token) : undefined;
    this.#secret = parsed?.secret || undefined;
    this.#pinned = parsed?.caSha256;
  }

  /** Reads what the data directory holds. */
  static async open(options: WorkerIdentityOptions): Promise<WorkerIdentity> {
    const identity = new WorkerIdentity(options);
    await identity.#load();
    return identity;
  }

  async #load(): Promise<void> {
    const dir = this.#o.dataDir;
    this.#credential = (await readIfThere(join(dir, CREDENTIAL_FILE)))?.trim() || undefined;
    const storedCa = await readIfThere(join(dir, CA_FILE));
    if (this.#o.ca && storedCa && fingerprint(this.#o.ca) !== fingerprint(storedCa)) {
      this.#o.logger.warn(
        { file: join(dir, CA_FILE) },
        "the CA given (--ca) is not the one this worker joined with: using the one given",
      );
    }
    this.#ca = this.#o.ca ?? storedCa;
    if (this.#ca && this.#pinned && fingerprint(this.#ca) !== this.#pinned) {
      throw new Error(
        `the join token pins CA sha256:${this.#pinned}, but the CA ${this.#o.ca ? "given" : "kept"} is sha256:${fingerprint(this.#ca)}`,
      );
    }
    const pem = await readIfThere(join(dir, CERT_FILE));
    if (pem) {
      this.#key = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(pem)?.[0];
      this.#cert = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem)?.[0];
    }
  }

  /** Whether the worker speaks TLS to the manager (and serves TLS itself). */
  get tls(): boolean {
    return this.#ca !== undefined || this.#pinned !== undefined;
  }

  /**
   * The worker's own server's material: its key and certificate (with the CA's) once it has
   * them, and the CA that client certificates (the manager's) must chain to. Undefined in
   * plaintext.
   */
  serverTls(): ServerTls | undefined {
    if (!this.tls) return undefined;
    const chain =
      this.#cert && this.#ca ? `${this.#cert.trim()}\n${this.#ca.trim()}\n` : this.#cert;
    return { key: this.#key, cert: chain, ca: this.#ca };
  }

  /**
   * What to present on the next dial: joins first when the worker has no credential yet,
   * renews its certificate first when due. Throws what went wrong (the stream client retries
   * with back-off).
   */
  async dial(): Promise<Dial> {
    if (!this.#credential) await this.#join();
    if (!this.tls) return { token: this.#credential, tls: undefined };
    if (!this.#cert || !this.#key || !this.#ca) {
      throw new Error(
        `worker ${this.#o.workerId} has a credential but no certificate for this TLS cluster: revoke its credential (cube token revoke), delete ${join(this.#o.dataDir, CREDENTIAL_FILE)} and start it again with a join token`,
      );
    }
    const now = Date.now();
    if (now >= validity(this.#cert).notAfter) {
      throw new Error(
        `worker ${this.#o.workerId}'s certificate expired on ${new Date(validity(this.#cert).notAfter).toISOString()}: revoke its credential (cube token revoke), delete ${join(this.#o.dataDir, CREDENTIAL_FILE)} and start it again with a join token`,
      );
    }
    if (renewalDue(this.#cert, now)) {
      await this.#renew().catch((error: unknown) =>
        this.#o.logger.warn(
          { err: error },
          "could not renew the worker's certificate; the current one still works",
        ),
      );
    }
    return { token: this.#credential, tls: this.#clientTls() };
  }

  /** TLS towards the manager as of now (after {@link dial}), or undefined: plaintext. */
  clientTls(): ClientTls | undefined {
    return this.tls ? this.#clientTls() : undefined;
  }

  #clientTls(): ClientTls {
    return { ca: this.#ca ?? "", cert: this.#cert, key: this.#key, expect: MANAGER_URI };
  }

  /** Trades the join token for a credential (and, over TLS, a certificate), and keeps them. */
  async #join(): Promise<void> {
    if (!this.#secret) {
      if (this.tls) throw new Error("no join token (--token, CUBE_TOKEN) to join the manager with");
      return; // a manager without auth
    }
    if (this.tls && !this.#ca && this.#pinned) {
      this.#ca = await fetchPinnedCa(this.#o.manager, this.#pinned);
      this.#o.logger.info(
        { sha256: this.#pinned },
        "the manager's CA matches the join token's digest",
      );
    }
    const keys = this.tls ? await newKeyPair() : undefined;
    const tokens = createClient(
      TokenService,
      grpcTransport(this.#o.manager, {
        token: this.#secret,
        tls: this.#ca ? { ca: this.#ca, expect: MANAGER_URI } : undefined,
      }),
    );
    let answer: Awaited<ReturnType<typeof tokens.joinWorker>>;
    try {
      answer = await tokens.joinWorker({
        workerId: this.#o.workerId,
        csr: keys ? await createCsr(keys, this.#o.workerId) : new Uint8Array(),
      });
    } catch (error) {
      const e = ConnectError.from(error);
      if (
        !this.tls &&
        e.code === Code.PermissionDenied &&
        /takes a join token/.test(e.rawMessage)
      ) {
        this.#credential = this.#secret; // already a credential of its own
        return;
      }
      // A TLS manager closes a plaintext client without a word; nobody listening, or no route,
      // says nothing of TLS.
      if (
        !this.tls &&
        [Code.Canceled, Code.Aborted, Code.Unavailable].includes(e.code) &&
        !isConnectFailure(error)
      ) {
        throw new Error(
          `${e.message} (if the manager serves TLS, give a join token with its CA's digest, <secret>@sha256:<hex>, or --ca)`,
        );
      }
      throw e;
    }
    if (keys) {
      if (answer.certificate.length === 0) {
        throw new Error("the manager answered the join without a certificate: does it serve TLS?");
      }
      const ca = certDerToPem(answer.caCertificate);
      if (fingerprint(ca) !== fingerprint(this.#ca ?? "")) {
        throw new Error("the manager answered the join with another CA than the one it presented");
      }
      await this.#keep(await keyToPem(keys.privateKey), certDerToPem(answer.certificate));
    }
    await writeSecretFile(join(this.#o.dataDir, CREDENTIAL_FILE), `${answer.secret}\n`);
    this.#credential = answer.secret;
    this.#o.logger.info(
      this.#cert ? { certificateUntil: new Date(validity(this.#cert).notAfter) } : {},
      "joined the manager: credential kept",
    );
  }

  /** A new key and certificate, over mTLS with the current ones and the credential. */
  async #renew(): Promise<void> {
    const keys = await newKeyPair();
    const tokens = createClient(
      TokenService,
      grpcTransport(this.#o.manager, { token: this.#credential, tls: this.#clientTls() }),
    );
    const answer = await tokens.renewWorkerCertificate({
      csr: await createCsr(keys, this.#o.workerId),
    });
    await this.#keep(await keyToPem(keys.privateKey), certDerToPem(answer.certificate));
    this.#o.logger.info(
      { certificateUntil: new Date(validity(this.#cert ?? "").notAfter) },
      "worker certificate renewed",
    );
  }

  /** Writes the CA, key and certificate (the latter two in one file, through a rename). */
  async #keep(key: string, cert: string): Promise<void> {
    const dir = join(this.#o.dataDir, "tls");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeSecretFile(join(this.#o.dataDir, CA_FILE), this.#ca ?? "", { mode: 0o644 });
    await writeSecretFile(join(this.#o.dataDir, CERT_FILE), `${key.trim()}\n${cert.trim()}\n`);
    this.#key = key;
    this.#cert = cert;
    this.emit("certificate");
    if (this.#started) this.#schedule();
  }

  /** Renews the certificate when due while the worker runs (its stream may never redial). */
  start(): void {
    if (!this.tls || this.#closed) return;
    this.#started = true;
    this.#schedule();
  }

  /** The next look at the certificate: when it is due (at least 1 s, at most an hour away). */
  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.#closed) return;
    let waitMs = CHECK_AT_MOST_EVERY_MS;
    if (this.#cert) {
      const { notBefore, notAfter } = validity(this.#cert);
      const dueAt = notAfter - (notAfter - notBefore) / 3;
      waitMs = Math.min(waitMs, Math.max(1000, dueAt - Date.now()));
    }
    this.#timer = setTimeout(() => {
      const due = this.#credential && this.#cert && renewalDue(this.#cert, Date.now());
      // A renewal reschedules on its own (#keep); a failed one or none comes back here.
      (due ? this.#renew() : Promise.reject(new Error("not due"))).catch((error: unknown) => {
        if (due) this.#o.logger.warn({ err: error }, "could not renew the worker's certificate");
        this.#schedule();
      });
    }, waitMs);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }
}

/** Socket errors of a dial that reached no server at all (nothing listening, no route, no name). */
const CONNECT_FAILURES =
  /\b(ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|ETIMEDOUT)\b/;

/** Whether `error` (or a cause of it) says the dial reached no server: no TLS hint then. */
function isConnectFailure(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && CONNECT_FAILURES.test(code)) return true;
    if (CONNECT_FAILURES.test(e.message)) return true;
  }
  return false;
}

async function readIfThere(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/**
 * The CA the manager presents, trusted only if its SHA-256 is `sha256` (from the join token)
 * and it signed the manager's certificate, which must name cube://manager. The handshake does
 * not check the CA (nothing is trusted yet); nothing but certificates is exchanged on it.
 */
export function fetchPinnedCa(manager: string, sha256: string): Promise<string> {
  const { host, port } = parseListen(manager.replace(/^https?:\/\//, ""));
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host,
      port,
      rejectUnauthorized: false,
      ALPNProtocols: ["h2"],
      ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }),
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no TLS handshake with the manager at ${manager} within 10 s`));
    }, 10_000);
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot fetch the manager's CA at ${manager}: ${error.message}`));
    });
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const leaf = socket.getPeerCertificate(true) as DetailedPeerCertificate;
      socket.destroy();
      const chain: Buffer[] = [];
      for (let c: DetailedPeerCertificate | undefined = leaf; c?.raw; c = c.issuerCertificate) {
        chain.push(c.raw);
        if (c.issuerCertificate === c) break;
      }
      const caDer = chain.find((der) => fingerprint(der) === sha256);
      if (!caDer || !leaf?.raw) {
        reject(
          new Error(
            `the manager at ${manager} presented no CA with the join token's digest sha256:${sha256}: it is not the manager that made the token`,
          ),
        );
        return;
      }
      const ca = new X509Certificate(caDer);
      const server = new X509Certificate(leaf.raw);
      if (!server.verify(ca.publicKey) || !sanUris(server.subjectAltName).includes(MANAGER_URI)) {
        reject(new Error(`the manager at ${manager} presented a certificate its CA did not sign`));
        return;
      }
      resolve(certDerToPem(caDer));
    });
  });
}
