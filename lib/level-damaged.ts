import { readdir } from "node:fs/promises";

/**
 * Refuses a directory holding LevelDB's tables and logs but not its CURRENT file: LevelDB
 * would take it for a new database (create_if_missing) and delete every table it does not
 * know, the whole store. A new or empty directory, or a whole database, passes.
 */
export async function refuseDamagedLevelDb(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return; // missing: LevelDB makes it (and any other trouble is its to report)
  }
  if (names.includes("CURRENT")) return;
  const tables = names.filter((n) => /^(MANIFEST-\d+|\d+\.(ldb|sst|log))$/.test(n));
  if (tables.length > 0) {
    throw new Error(
      `the store in ${dir} is damaged: it holds LevelDB files (${tables.slice(0, 3).join(", ")}${tables.length > 3 ? ", …" : ""}) but no CURRENT file, and opening it would start an empty store over them; restore CURRENT from a backup (it names the MANIFEST file to use) or move the files away to start anew`,
    );
  }
}
