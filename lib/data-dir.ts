import { chmod, mkdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Logger } from "./logger.js";
import { octalMode, tightenSecretFile, whom } from "./secret-file.js";

/**
 * A data directory cube will not use: owned by another user, or writable by group or others
 * (anyone who can write there can swap keys, tokens and the store). `cube` reports it as a
 * usage error (exit 2); its message names the directory and the fix.
 */
export class UnsafeDataDirError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
    this.name = "UnsafeDataDirError";
  }
}

/** What {@link prepareDataDir} needs besides the directory. */
export interface DataDirOptions {
  /** Where the warnings go (a directory or a file made private). */
  readonly logger: Pick<Logger, "warn">;
  /** Files in it that hold secrets (paths relative to it): made 0600 where they are looser. */
  readonly secretFiles?: readonly string[];
}

/**
 * Makes a manager's or a worker's data directory ready, as sshd's StrictModes treats ~/.ssh:
 * a missing one (and its missing parents) is made with mode 0700; an existing one must belong
 * to this user and be writable by nobody else (else {@link UnsafeDataDirError}, naming the fix
 * `chmod 700 DIR`); one that group or others may read or enter is made 0700, with a warning
 * (LevelDB makes its files 0644: the directory is what keeps them private). Each of
 * `secretFiles` that group or others may read is made 0600, with a warning.
 */
export async function prepareDataDir(dir: string, options: DataDirOptions): Promise<void> {
  const path = resolve(dir);
  await mkdir(path, { recursive: true, mode: 0o700 });
  const stats = await stat(path);
  if (!stats.isDirectory()) {
    throw new UnsafeDataDirError(path, `data directory ${path} is not a directory`);
  }
  const uid = process.getuid?.();
  if (uid !== undefined && stats.uid !== uid) {
    throw new UnsafeDataDirError(
      path,
      `data directory ${path} belongs to uid ${stats.uid}, not to this user (uid ${uid}): its owner could read or replace the keys and tokens in it; use a directory of your own, or fix it with: chown ${uid} ${shellWord(path)} && chmod 700 ${shellWord(path)}`,
    );
  }
  const mode = stats.mode & 0o777;
  if (mode & 0o022) {
    throw new UnsafeDataDirError(
      path,
      `data directory ${path} is writable by ${whom(mode & 0o022)} (mode ${octalMode(mode)}): anyone who can write there could replace the keys, tokens and state in it; fix it with: chmod 700 ${shellWord(path)}`,
    );
  }
  if (mode & 0o077) {
    await chmod(path, 0o700);
    options.logger.warn(
      { dataDir: path, was: octalMode(mode) },
      `data directory ${path} was readable by ${whom(mode & 0o077)} (mode ${octalMode(mode)}): made 0700`,
    );
  }
  for (const file of options.secretFiles ?? []) {
    const secret = join(path, file);
    const was = await tightenSecretFile(secret);
    if (was !== undefined) {
      options.logger.warn(
        { file: secret, was: octalMode(was) },
        `${secret} holds a secret but was readable by ${whom(was & 0o077)} (mode ${octalMode(was)}): made 0600`,
      );
    }
  }
}

/** `path` as one word of a shell command (quoted when it needs to be). */
function shellWord(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replaceAll("'", `'\\''`)}'`;
}
