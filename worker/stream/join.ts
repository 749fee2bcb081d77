import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { TokenService } from "../../gen/cube/v1/token_service_pb.js";
import type { Logger } from "../../lib/logger.js";
import { grpcTransport } from "../../lib/rpc/client.js";

/** Where a worker keeps its own credential (mode 0600). */
export const CREDENTIAL_FILE = "credential";

/**
 * The worker's own credential, for its stream: the one kept in its data directory, or — the
 * first time — one it gets from the manager for its id with the join token it was given
 * (TokenService.JoinWorker), then keeps. A token the manager refuses to trade because it
 * already is a worker's credential is used as it is. Without a token: undefined (a manager
 * that runs without auth). Throws what the manager said when it cannot join; the stream
 * client retries with back-off.
 */
export function credentialSource(options: {
  manager: string;
  dataDir: string;
  workerId: string;
  token: string | undefined;
  logger: Logger;
}): () => Promise<string | undefined> {
  const file = join(options.dataDir, CREDENTIAL_FILE);
  let known: string | undefined;
  return async () => {
    if (known) return known;
    try {
      known = (await readFile(file, "utf8")).trim();
      return known;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    if (!options.token) return undefined;
    const tokens = createClient(
      TokenService,
      grpcTransport(options.manager, { token: options.token }),
    );
    try {
      const { secret } = await tokens.joinWorker({ workerId: options.workerId });
      await writeFile(file, `${secret}\n`, { mode: 0o600 });
      options.logger.info({ worker: options.workerId }, "joined the manager: credential kept");
      known = secret;
    } catch (error) {
      const e = ConnectError.from(error);
      if (e.code === Code.PermissionDenied && /takes a join token/.test(e.rawMessage)) {
        known = options.token; // already a credential of its own
      } else {
        throw e;
      }
    }
    return known;
  };
}
