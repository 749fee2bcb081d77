/**
 * The cluster's X.509 pieces, on @peculiar/x509 over Node's WebCrypto (no hand-made ASN.1):
 * a CA, certificates it signs, PKCS#10 requests, PEM/DER and fingerprints. Every key is
 * ECDSA P-256 with SHA-256, which gRPC's own stacks (BoringSSL, Go) and OpenSSL all speak.
 */
// @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API.
import "reflect-metadata";
import { createHash, X509Certificate as NodeCertificate, webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

// @peculiar/x509 types its provider with the DOM's Crypto, which is Node's webcrypto.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[1]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/**
 * Backdating of notBefore, so a peer whose clock is a little behind accepts a new
 * certificate: 5 minutes, or a tenth of a (test's) short validity.
 */
const CLOCK_SKEW_MS = 5 * 60_000;
const backdate = (validityMs: number) => Math.min(CLOCK_SKEW_MS, validityMs / 10);

/** A private key and its certificate, as PEM. */
export interface KeyAndCertificate {
  /** PKCS#8 private key. */
  readonly keyPem: string;
  readonly certPem: string;
}

/** A new ECDSA P-256 key pair (extractable, so it can be written to a file). */
export function newKeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ALGORITHM, true, [
    "sign",
    "verify",
  ]) as Promise<CryptoKeyPair>;
}

/** A private key as PKCS#8 PEM. */
export async function keyToPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

/** A PKCS#8 PEM private key, for signing. */
export function keyFromPem(pem: string): Promise<CryptoKey> {
  return webcrypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(pem), ALGORITHM, false, [
    "sign",
  ]) as Promise<CryptoKey>;
}

/** DER bytes of the first PEM block (a certificate or a request). */
export function pemToDer(pem: string): Uint8Array {
  return new Uint8Array(x509.PemConverter.decodeFirst(pem));
}

/** A certificate's DER bytes as PEM. */
export function certDerToPem(der: Uint8Array): string {
  return x509.PemConverter.encode(Uint8Array.from(der).buffer, "CERTIFICATE");
}

/** The SHA-256 of a certificate's DER bytes, lowercase hex: what a join token pins. */
export function fingerprint(cert: string | Uint8Array): string {
  const der = typeof cert === "string" ? pemToDer(cert) : cert;
  return createHash("sha256").update(der).digest("hex");
}

/** When a certificate stops being valid, and when it started. */
export function validity(certPem: string): { notBefore: number; notAfter: number } {
  const cert = new NodeCertificate(certPem);
  return { notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo) };
}

/**
 * Whether a certificate should be replaced at `nowMs`: expired, or in the last third of its
 * life (a 30-day certificate is renewed from day 20 on, leaving ten days of retries).
 */
export function renewalDue(certPem: string, nowMs: number): boolean {
  const { notBefore, notAfter } = validity(certPem);
  return nowMs >= notAfter - (notAfter - notBefore) / 3;
}

/** A self-signed CA: may sign end-entity certificates only (path length 0). */
export async function createCa(commonName: string, validityMs: number): Promise<KeyAndCertificate> {
  const keys = await newKeyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${commonName}`,
    notBefore: new Date(now - backdate(validityMs)),
    notAfter: new Date(now + validityMs),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { keyPem: await keyToPem(keys.privateKey), certPem: cert.toString("pem") };
}

/** Who a certificate names: its subject alternative names. */
export interface CertificateNames {
  readonly commonName: string;
  /** URIs, e.g. cube://manager or cube://worker/<id>: who it is to cube. */
  readonly uris?: readonly string[];
  /** Host names (for clients that check the host they dialled, like buf curl and grpcio). */
  readonly dns?: readonly string[];
  readonly ips?: readonly string[];
}

/**
 * A certificate signed by the CA for `publicKey`, valid from now (backdated a little) for
 * `validityMs`, for both TLS servers and clients: cube's manager and workers are each both.
 */
export async function issueCertificate(options: {
  ca: KeyAndCertificate;
  publicKey: CryptoKey | x509.PublicKey;
  names: CertificateNames;
  validityMs: number;
}): Promise<string> {
  const ca = new x509.X509Certificate(options.ca.certPem);
  const signingKey = await keyFromPem(options.ca.keyPem);
  const now = Date.now();
  const notAfter = Math.min(now + options.validityMs, ca.notAfter.getTime());
  const names: x509.JsonGeneralName[] = [
    ...(options.names.uris ?? []).map((value) => ({ type: "url" as const, value })),
    ...(options.names.dns ?? []).map((value) => ({ type: "dns" as const, value })),
    ...(options.names.ips ?? []).map((value) => ({ type: "ip" as const, value })),
  ];
  const publicKey =
    options.publicKey instanceof x509.PublicKey
      ? options.publicKey
      : await x509.PublicKey.create(
          options.publicKey as Parameters<typeof x509.PublicKey.create>[0],
        );
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${options.names.commonName.replace(/[,+="\\<>;#]/g, "_")}`,
    issuer: ca.subject,
    notBefore: new Date(now - backdate(options.validityMs)),
    notAfter: new Date(notAfter),
    publicKey,
    signingKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
    ],
  });
  return cert.toString("pem");
}

/** A PKCS#10 request (DER) for `keys`: proof that its sender holds the private key. */
export async function createCsr(keys: CryptoKeyPair, commonName: string): Promise<Uint8Array> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName.replace(/[,+="\\<>;#]/g, "_")}`,
    keys,
    signingAlgorithm: ALGORITHM,
  });
  return new Uint8Array(csr.rawData);
}

/**
 * The public key of a PKCS#10 request, once its signature checks (its sender holds the key).
 * What it asks to be named is ignored: the CA decides the names. Throws on anything else:
 * not DER, a bad signature, a key other than ECDSA P-256.
 */
export async function csrPublicKey(der: Uint8Array): Promise<x509.PublicKey> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(Uint8Array.from(der).buffer);
  } catch {
    throw new Error("not a PKCS#10 certificate request (DER)");
  }
  const algorithm = csr.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
  if (algorithm.name !== "ECDSA" || algorithm.namedCurve !== "P-256") {
    throw new Error("the request's key must be ECDSA P-256");
  }
  if (!(await csr.verify())) throw new Error("the request's signature does not check");
  return csr.publicKey;
}
