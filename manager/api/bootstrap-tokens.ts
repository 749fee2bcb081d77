import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Role } from "../../gen/cube/v1/token_service_pb.js";
import { writeSecretFile } from "../../lib/secret-file.js";
import type { ControlPlane } from "../core/control-plane.js";

/** The token files a manager keeps in its data directory (mode 0600). */
export type TokenFile = "admin" | "worker";

/** The token files' names in the data directory. */
export const TOKEN_FILES: readonly string[] = ["admin.token", "worker.token"];

const fileOf = (dataDir: string, kind: TokenFile) => join(dataDir, `${kind}.token`);

/**
 * On a manager's first start (no token stored yet): an admin token for the local user and a
 * worker join token, each stored hashed like any token and written in clear to a 0600 file
 * of the data directory — whoever can read the manager's data can act as it anyway. Later
 * starts change nothing (revoked tokens stay revoked; a deleted file is not rewritten),
 * except when no admin token works any more (the last ones expired): then a new one is
 * made and written to `admin.token`, so the cluster can be managed again by whoever holds
 * its data, as at the first start.
 */
export async function writeFirstTokens(cp: ControlPlane, dataDir: string): Promise<void> {
  const now = cp.clock.now();
  const first = cp.tokens.size === 0;
  if (!first && cp.tokens.liveAdmins(now).length > 0) return;
  const wanted = first
    ? ([
        ["admin", Role.ADMIN, "first admin token"],
        ["worker", Role.WORKER, "first worker join token"],
      ] as const)
    : ([["admin", Role.ADMIN, "admin token (none worked)"]] as const);
  for (const [kind, role, name] of wanted) {
    const { record, secret } = cp.tokens.create(name, role, undefined, now);
    cp.store.putToken(record);
    await cp.committed();
    // Replaces the file (a link planted under its name too), never writes through it.
    await writeSecretFile(fileOf(dataDir, kind), `${secret}\n`);
    const fields = { token: record.token?.id, file: fileOf(dataDir, kind) };
    if (first) cp.logger.info(fields, `${name} created`);
    else cp.logger.warn(fields, "no admin token worked (revoked or expired): a new one written");
  }
}

/** The token a manager wrote to `dataDir` on its first start (see {@link writeFirstTokens}). */
export async function readToken(dataDir: string, kind: TokenFile): Promise<string> {
  return (await readFile(fileOf(dataDir, kind), "utf8")).trim();
}
