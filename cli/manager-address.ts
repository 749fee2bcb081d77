import { usageError } from "./cli-error.js";

const EXAMPLE = "use host:port, e.g. 127.0.0.1:5555 ([::1]:5555 for IPv6), or an http(s):// URL";

/**
 * What is wrong with a manager address, in words, or undefined when it can be dialled. It is
 * read the way lib/rpc/client.ts grpcTransport reads it: host:port, or a full http(s) URL.
 */
export function addressProblem(address: string): string | undefined {
  const url = /^https?:\/\//i.test(address) ? address : `http://${address}`;
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    // Said below, in more words than the URL parser's "Invalid URL".
  }
  // The port as written: after the last colon that is not inside [IPv6 brackets].
  const port = /:([^:\]/]*)\/?$/.exec(url.replace(/^https?:\/\//i, ""))?.[1];
  if (port !== undefined && /^\d+$/.test(port) && (Number(port) < 1 || Number(port) > 65535)) {
    return `port ${port} is out of range (1-65535)`;
  }
  if (parsed) return undefined;
  if (port !== undefined && port !== "" && !/^\d+$/.test(port)) {
    return `port "${port}" is not a number`;
  }
  if (/\s/.test(address)) return `it contains a space; ${EXAMPLE}`;
  if (address.startsWith(":")) return `no host before the port; ${EXAMPLE}`;
  return EXAMPLE;
}

/**
 * `address` when it can be dialled, else a usage error naming it, where it came from and what
 * is wrong with it: connect-node would only say "Invalid URL", when the first call fails.
 * `flag` is --manager as given: the address came from it, else from CUBE_MANAGER, else from
 * the config file.
 */
export function checkManagerAddress(
  address: string,
  flag: string | undefined,
  env: NodeJS.ProcessEnv,
): string {
  const problem = addressProblem(address);
  if (problem === undefined) return address;
  const source = flag
    ? "--manager"
    : env.CUBE_MANAGER
      ? "CUBE_MANAGER"
      : "the config file's manager";
  throw usageError(`${source} "${address}" is not a manager address: ${problem}`);
}

/**
 * `address` when a server can listen on it (host:port, the port 0-65535, 0 picking a free
 * one), else a usage error naming `source` (--listen, CUBE_LISTEN): the server would only
 * fail with exit 1 once it starts.
 */
export async function checkListenAddress(address: string, source: string): Promise<string> {
  // Loaded here: only the commands that serve need it.
  const { parseListen } = await import("../lib/rpc/server.js");
  try {
    parseListen(address);
  } catch {
    const port = /:(\d+)$/.exec(address)?.[1];
    throw usageError(
      port !== undefined
        ? `${source} "${address}": port must be 1-65535 (or 0 to pick a free one)`
        : `${source} "${address}" is not host:port, e.g. 127.0.0.1:5555`,
    );
  }
  return address;
}
