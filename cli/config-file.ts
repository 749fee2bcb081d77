import { lstat, mkdir, readFile, readlink } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { octalMode, whom, writeSecretFile } from "../lib/secret-file.js";

/**
 * What `cube dev` and `cube manager` write for the local user so that client commands
 * need no flags: where the manager is, the admin token it made on its first start, and,
 * when it serves TLS, the path of the cluster CA's certificate.
 */
export interface CubeConfig {
  manager?: string;
  token?: string;
  ca?: string;
}

/**
 * The config file: $CUBE_CONFIG, else $XDG_CONFIG_HOME/cube/config.json, else
 * ~/.config/cube/config.json.
 */
export function configPath(env: NodeJS.ProcessEnv): string {
  if (env.CUBE_CONFIG) return env.CUBE_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config");
  return join(base, "cube", "config.json");
}

/** The config file's contents; {} when there is none. A file that is not JSON is an error. */
export async function readConfig(env: NodeJS.ProcessEnv): Promise<CubeConfig> {
  const path = configPath(env);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw error;
  }
  try {
    const parsed = JSON.parse(text) as CubeConfig;
    return {
      manager: typeof parsed.manager === "string" ? parsed.manager : undefined,
      token: typeof parsed.token === "string" ? parsed.token : undefined,
      ca: typeof parsed.ca === "string" ? parsed.ca : undefined,
    };
  } catch {
    throw new Error(`${path} is not JSON: fix or remove it`);
  }
}

/**
 * Writes the config file, mode 0600 (it holds a token), as a new file renamed over the old one
 * (lib/secret-file.ts): never through an existing file, whose mode would stay, nor through a
 * symbolic link, which is replaced. `warn` hears of an old file that others could read, and of
 * a link replaced. A manager listening on every address (0.0.0.0, [::]) is written as its
 * loopback address, which this machine's clients may dial in plaintext (lib/rpc/client.ts
 * `plaintextDialProblem`). Returns the file's path.
 */
export async function writeConfig(
  env: NodeJS.ProcessEnv,
  config: CubeConfig,
  warn: (message: string) => void,
): Promise<string> {
  const path = configPath(env);
  if (config.manager) config = { ...config, manager: localAddress(config.manager) };
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const old = await lstat(path).catch(() => undefined);
  const target = old?.isSymbolicLink() ? await readlink(path).catch(() => "?") : undefined;
  await writeSecretFile(path, `${JSON.stringify(config, null, 2)}\n`);
  if (target !== undefined) {
    warn(`${path} was a symbolic link (to ${target}): replaced with a file of its own, mode 0600`);
  } else if (old && old.mode & 0o077) {
    warn(
      `${path} holds a token but was readable by ${whom(old.mode & 0o077)} (mode ${octalMode(old.mode)}): written again with mode 0600`,
    );
  }
  return path;
}

/** `address` as a client on this machine dials it: every address (0.0.0.0, [::]) on loopback. */
export function localAddress(address: string): string {
  return address.replace(/^0\.0\.0\.0:/, "127.0.0.1:").replace(/^\[::\]:/, "[::1]:");
}
