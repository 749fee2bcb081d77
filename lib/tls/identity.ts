/**
 * Who a cube certificate names. The cluster's CA signs certificates for the manager and for
 * workers only, and each carries one cube URI among its subject alternative names:
 * `cube://manager`, or `cube://worker/<worker id>`. Peers are recognised by that URI, not by
 * a host name, so a manager listening on 0.0.0.0 or a worker behind NAT is still known.
 */

/** The URI of the manager's certificate. */
export const MANAGER_URI = "cube://manager";

const WORKER_PREFIX = "cube://worker/";

/** The URI of worker `id`'s certificate. */
export function workerUri(id: string): string {
  return `${WORKER_PREFIX}${id}`;
}

/**
 * The URIs of a subjectAltName as Node prints it (`URI:cube://manager, DNS:localhost`;
 * entries with special characters come JSON-quoted).
 */
export function sanUris(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  const uris: string[] = [];
  for (const m of subjectAltName.matchAll(/(?:^|, )URI:("(?:[^"\\]|\\.)*"|[^,]*)/g)) {
    const raw = m[1] ?? "";
    uris.push(raw.startsWith('"') ? (JSON.parse(raw) as string) : raw);
  }
  return uris;
}

/** The worker id a certificate's URIs name, or undefined. */
export function workerOf(uris: readonly string[]): string | undefined {
  const found = uris.filter((u) => u.startsWith(WORKER_PREFIX));
  return found.length === 1 ? found[0]?.slice(WORKER_PREFIX.length) : undefined;
}

/**
 * How a cube client dials a cube server over TLS: the cluster's CA (PEM), its own
 * certificate and key when it has one (workers; the manager towards workers), and the cube
 * URI the server's certificate must carry (undefined: the usual host name check).
 */
export interface ClientTls {
  readonly ca: string;
  readonly cert?: string;
  readonly key?: string;
  readonly expect?: string;
}

/**
 * A `checkServerIdentity` for Node's TLS client: the server's certificate (already checked
 * against the CA) must carry `uri`.
 */
export function expectUri(
  uri: string,
): (host: string, cert: { subjectaltname?: string }) => Error | undefined {
  return (_host, cert) =>
    sanUris(cert.subjectaltname).includes(uri)
      ? undefined
      : new Error(`the server's certificate does not name ${uri}`);
}

/**
 * A join token may carry the SHA-256 of the cluster's CA certificate, as Swarm's do:
 * `<secret>@sha256:<64 hex>`. A new worker checks the CA the manager presents against it
 * before trusting anything; old tokens (the bare secret) still work, with --ca.
 */
export function parseJoinToken(token: string): { secret: string; caSha256?: string } {
  const m = /^(.*)@sha256:([0-9a-fA-F]{64})$/.exec(token.trim());
  return m
    ? { secret: m[1] ?? "", caSha256: (m[2] ?? "").toLowerCase() }
    : { secret: token.trim() };
}

/** A join token carrying the CA's digest (see {@link parseJoinToken}). */
export function joinToken(secret: string, caSha256: string): string {
  return `${secret}@sha256:${caSha256}`;
}
