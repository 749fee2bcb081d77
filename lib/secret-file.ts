import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { chmod, link, lstat, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** Group and other permission bits: a secret file has none of them. */
const GROUP_OTHER = 0o077;

/** How {@link writeSecretFile} writes. */
export interface SecretFileOptions {
  /** The file's mode, exactly (the umask does not narrow it); 0600 unless given. */
  readonly mode?: number;
  /**
   * Fail with EEXIST when `path` exists (a file or a link), instead of replacing it: for a
   * file made once, where two processes racing must not each end up with their own.
   */
  readonly exclusive?: boolean;
}

/**
 * Writes `data` to `path` as ssh and kubeadm write keys: into a new file of the same directory,
 * opened with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600 (so nobody else can open it in
 * between, and no link planted under its name is followed), flushed with fsync, then renamed
 * over `path`. The rename replaces whatever `path` was, a symbolic link included, and never
 * writes through it; a reader sees the old file or the whole new one, never half of it, and the
 * directory is synced so the new name survives a crash. The file ends with `options.mode`
 * (0600 by default; 0644 for a certificate anyone may read). With `exclusive`, the file is
 * linked into place instead (link(2) fails on any existing name), so the first writer wins.
 * The temporary file is removed when anything fails.
 */
export async function writeSecretFile(
  path: string,
  data: string | Uint8Array,
  options: SecretFileOptions = {},
): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const file = await open(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  let tmpLeft = true;
  try {
    try {
      await file.writeFile(data);
      // Set exactly: the umask narrows a mode given to open(2), never widens it.
      await file.chmod(options.mode ?? 0o600);
      await file.sync();
    } finally {
      await file.close();
    }
    if (options.exclusive) {
      await link(tmp, path);
      await unlink(tmp);
    } else {
      await rename(tmp, path);
    }
    tmpLeft = false;
    await syncDirectory(dir);
  } finally {
    if (tmpLeft) await unlink(tmp).catch(() => undefined);
  }
}

/** Flushes a directory's entries (a new name in it) to disk. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Takes group and other permissions off an existing secret file (chmod 0600), as sshd insists
 * on for keys: returns the mode it had when that was looser, undefined when it was already
 * private, is absent, or is no regular file (a symbolic link is left alone: chmod would follow
 * it). Callers warn with the old mode.
 */
export async function tightenSecretFile(path: string): Promise<number | undefined> {
  let stats: Awaited<ReturnType<typeof lstat>>;
  try {
    stats = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  if (!stats.isFile() || (stats.mode & GROUP_OTHER) === 0) return undefined;
  await chmod(path, 0o600);
  return stats.mode & 0o777;
}

/** A mode as people read it: 0644. */
export function octalMode(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, "0")}`;
}

/** "group", "others" or "group and others", for the permission bits in `bits`. */
export function whom(bits: number): string {
  const group = (bits & 0o070) !== 0;
  const others = (bits & 0o007) !== 0;
  return group && others ? "group and others" : group ? "group" : "others";
}
