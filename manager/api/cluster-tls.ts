import { X509Certificate } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { hostname, networkInterfaces } from "node:os";
import { join } from "node:path";
import type { Logger } from "../../lib/logger.js";
import type { ServerTls } from "../../lib/rpc/server.js";
import { writeSecretFile } from "../../lib/secret-file.js";
import { type ClientTls, MANAGER_URI, workerUri } from "../../lib/tls/identity.js";
import type { CertificateNames, KeyAndCertificate } from "../../lib/tls/pki.js";

/**
 * lib/tls/pki.ts, loaded by the first `ClusterTls.open`: its X.509 and ASN.1 modules took
 * a noticeable share of every manager's start-up, TLS or not.
 */
let pki: typeof import("../../lib/tls/pki.js");

/** How long the cluster's CA lives: ten years (renewing a CA means every node re-trusts). */
const CA_VALIDITY_MS = 10 * 365 * 24 * 3600_000;
/** The manager's own certificate: 90 days, renewed from day 60 on (and at every start then). */
export const DEFAULT_SERVER_CERT_MS = 90 * 24 * 3600_000;
/** A worker's certificate: 30 days, renewed by the worker from day 20 on. */
export const DEFAULT_WORKER_CERT_MS = 30 * 24 * 3600_000;
/** How often the manager looks at its own certificate's age. */
const CHECK_EVERY_MS = 3600_000;

/** Where a manager keeps its TLS files: `<data dir>/tls`, mode 0700. */
export function tlsDir(dataDir: string): string {
  return join(dataDir, "tls");
}

/** The private keys among them, relative to the data directory (0600). */
export const TLS_KEY_FILES: readonly string[] = [join("tls", "ca.key"), join("tls", "manager.key")];

/** The cluster CA's certificate file, the one clients pass as --ca. */
export function caFile(dataDir: string): string {
  return join(tlsDir(dataDir), "ca.crt");
}

/**
 * The host names and addresses the manager's certificate carries, for clients that check the
 * host they dialled (buf curl, grpcio, curl): the listen host, loopback, `localhost`, the host
 * name, and every address of the machine when it listens on all of them.
 */
export function serverNames(listenHost: string): CertificateNames {
  const ips = new Set(["127.0.0.1", "::1"]);
  const dns = new Set(["localhost", hostname()]);
  if (listenHost === "0.0.0.0" || listenHost === "::" || listenHost === "") {
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) ips.add(a.address.replace(/%.*$/, ""));
    }
  } else if (isIP(listenHost)) {
    ips.add(listenHost);
  } else {
    dns.add(listenHost);
  }
  return { commonName: "cube manager", uris: [MANAGER_URI], dns: [...dns], ips: [...ips] };
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
 * The cluster's CA and the manager's certificate, in `<data dir>/tls`: `ca.key` (0600) and
 * `ca.crt` made on the first start with TLS on and kept for good; `manager.key` (0600) and
 * `manager.crt`, issued by that CA for the names of {@link serverNames}, renewed when a third
 * of their life is left or the names change. The same certificate is the manager's client
 * certificate towards workers (when it proxies their logs).
 */
export class ClusterTls {
  #server: KeyAndCertificate;
  #generation = 0;
  #timer: NodeJS.Timeout | undefined;
  #onRenewed: (() => void) | undefined;

  private constructor(
    readonly dir: string,
    readonly ca: KeyAndCertificate,
    server: KeyAndCertificate,
    readonly names: CertificateNames,
    readonly workerCertMs: number,
    readonly serverCertMs: number,
    readonly logger: Logger,
  ) {
    this.#server = server;
  }

  /** Loads or makes the CA and the manager's certificate. */
  static async open(options: {
    dataDir: string;
    listenHost: string;
    logger: Logger;
    workerCertMs?: number;
    serverCertMs?: number;
  }): Promise<ClusterTls> {
    pki ??= await import("../../lib/tls/pki.js");
    const dir = tlsDir(options.dataDir);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const caKey = await readIfThere(join(dir, "ca.key"));
    const caCert = await readIfThere(join(dir, "ca.crt"));
    let ca: KeyAndCertificate;
    if (caKey && caCert) {
      ca = { keyPem: caKey, certPem: caCert };
    } else {
      ca = await pki.createCa(`cube cluster CA ${hostname()}`, CA_VALIDITY_MS);
      await writeSecretFile(join(dir, "ca.key"), ca.keyPem);
      await writeSecretFile(join(dir, "ca.crt"), ca.certPem, { mode: 0o644 });
      options.logger.info(
        { file: join(dir, "ca.crt"), sha256: pki.fingerprint(ca.certPem) },
        "cluster CA created",
      );
    }
    const names = serverNames(options.listenHost);
    const key = await readIfThere(join(dir, "manager.key"));
    const cert = await readIfThere(join(dir, "manager.crt"));
    const tls = new ClusterTls(
      dir,
      ca,
      key && cert ? { keyPem: key, certPem: cert } : { keyPem: "", certPem: "" },
      names,
      options.workerCertMs ?? DEFAULT_WORKER_CERT_MS,
      options.serverCertMs ?? DEFAULT_SERVER_CERT_MS,
      options.logger,
    );
    await tls.renewIfDue();
    return tls;
  }

  /** The CA's SHA-256 (hex), which join tokens carry. */
  get caSha256(): string {
    return pki.fingerprint(this.ca.certPem);
  }

  /** The manager's server material: its key, its certificate and the CA's, and the CA. */
  serverTls(): ServerTls {
    return {
      key: this.#server.keyPem,
      cert: `${this.#server.certPem.trim()}\n${this.ca.certPem.trim()}\n`,
      ca: this.ca.certPem,
    };
  }

  /** How the manager dials worker `workerId`'s own server: its certificate must name it. */
  clientTlsFor(workerId: string): ClientTls {
    return {
      ca: this.ca.certPem,
      cert: this.#server.certPem,
      key: this.#server.keyPem,
      expect: workerUri(workerId),
    };
  }

  /** Grows by one each time the manager's certificate is renewed. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Signs a certificate naming worker `workerId` for the key of a PKCS#10 request (checked:
   * its sender holds the key). Throws with what is wrong with the request.
   */
  async issueWorker(
    workerId: string,
    csr: Uint8Array,
  ): Promise<{ certificate: Uint8Array; caCertificate: Uint8Array; notAfter: string }> {
    const publicKey = await pki.csrPublicKey(csr);
    const certPem = await pki.issueCertificate({
      ca: this.ca,
      publicKey,
      names: { commonName: workerId, uris: [workerUri(workerId)] },
      validityMs: this.workerCertMs,
    });
    const { notAfter } = pki.validity(certPem);
    return {
      certificate: pki.pemToDer(certPem),
      caCertificate: pki.pemToDer(this.ca.certPem),
      notAfter: new Date(notAfter).toISOString(),
    };
  }

  /**
   * Replaces the manager's certificate when it is missing, in its last third, not from this
   * CA or short of a name; returns whether it did.
   */
  async renewIfDue(now = Date.now()): Promise<boolean> {
    if (this.#server.certPem && !this.#stale(now)) return false;
    const keys = await pki.newKeyPair();
    const certPem = await pki.issueCertificate({
      ca: this.ca,
      publicKey: keys.publicKey,
      names: this.names,
      validityMs: this.serverCertMs,
    });
    const keyPem = await pki.keyToPem(keys.privateKey);
    await writeSecretFile(join(this.dir, "manager.key"), keyPem);
    await writeSecretFile(join(this.dir, "manager.crt"), certPem, { mode: 0o644 });
    this.#server = { keyPem, certPem };
    this.#generation++;
    this.logger.info({ file: join(this.dir, "manager.crt") }, "manager certificate issued");
    return true;
  }

  #stale(now: number): boolean {
    const cert = new X509Certificate(this.#server.certPem);
    const ca = new X509Certificate(this.ca.certPem);
    if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return true;
    const san = cert.subjectAltName ?? "";
    const missing = [
      ...(this.names.dns ?? []).map((d) => `DNS:${d}`),
      ...(this.names.ips ?? []).map((ip) => `IP Address:${ip}`),
    ].some((entry) => !san.split(", ").some((have) => sameSan(have, entry)));
    return missing || pki.renewalDue(this.#server.certPem, now);
  }

  /**
   * Checks the manager's certificate every hour and renews it when due; `onRenewed` then
   * hands the new material to the server (and drops connections made with the old one).
   */
  start(onRenewed: () => void): void {
    this.#onRenewed = onRenewed;
    this.#timer = setInterval(() => {
      this.renewIfDue()
        .then((renewed) => {
          if (renewed) this.#onRenewed?.();
        })
        .catch((error: unknown) =>
          this.logger.error({ err: error }, "could not renew the manager's certificate"),
        );
    }, CHECK_EVERY_MS);
    this.#timer.unref();
  }

  close(): void {
    clearInterval(this.#timer);
  }
}

/** Whether two subjectAltName entries are equal (IPv6 addresses in any spelling). */
function sameSan(have: string, want: string): boolean {
  if (have === want) return true;
  const ip = "IP Address:";
  if (!have.startsWith(ip) || !want.startsWith(ip)) return false;
  return normaliseIp(have.slice(ip.length)) === normaliseIp(want.slice(ip.length));
}

function normaliseIp(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  // Expand to eight groups without leading zeros.
  const [head = "", tail = ""] = ip.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = ip.includes("::") ? [...h, ...Array(8 - h.length - t.length).fill("0"), ...t] : h;
  return groups.map((g) => g.replace(/^0+(?=.)/, "").toLowerCase()).join(":");
}
