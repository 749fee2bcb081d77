/**
 * Everything a benchmark makes — child processes, containers, temp directories — is
 * registered here when made and undone by {@link cleanUp}, which main calls on success,
 * on failure and on SIGINT/SIGTERM alike. Scenarios also clean up after each run, so a
 * long run does not pile up containers; this is the safety net.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

type Undo = () => Promise<unknown> | unknown;

const undos = new Map<number, { what: string; undo: Undo }>();
let next = 0;

/** Registers `undo`; returns a function that runs it now (once) and unregisters it. */
export function deferCleanup(what: string, undo: Undo): () => Promise<void> {
  const id = next++;
  undos.set(id, { what, undo });
  return async () => {
    if (!undos.delete(id)) return;
    await undo();
  };
}

/** Runs every registered undo, newest first; an undo that fails is reported, not fatal. */
export async function cleanUp(): Promise<void> {
  const all = [...undos.entries()].reverse();
  undos.clear();
  for (const [, { what, undo }] of all) {
    try {
      await undo();
    } catch (error) {
      process.stderr.write(`bench: cleaning up ${what} failed: ${(error as Error).message}\n`);
    }
  }
}

/** A fresh temp directory (under `base`, default the OS temp dir), removed by clean-up. */
export async function tempDir(
  prefix: string,
  base = tmpdir(),
): Promise<{
  path: string;
  remove: () => Promise<void>;
}> {
  const path = await mkdtemp(join(base, `cube-bench-${prefix}-`));
  const remove = deferCleanup(`temp dir ${path}`, () => rm(path, { recursive: true, force: true }));
  return { path, remove };
}
