/**
 * Builds the dashboard (web/) into web/dist, which the manager serves at `/`:
 * web/src/main.tsx bundled by esbuild (Preact, uPlot, connect-web and the generated
 * cube.v1 code) into assets named by their content hash, and web/index.html pointing at
 * them. scripts/setup.sh runs it when web/ or what it imports changed (`npm run build:web`
 * runs it always); test/dashboard.test.ts runs it before it loads the page.
 *
 * The new build is made beside the old one and swapped in by renames, so a manager serving
 * the old one never reads a half-written file.
 */
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

/** The repository's web/ folder. */
export const WEB_DIR = fileURLToPath(new URL("../web/", import.meta.url));
/** Where the build goes (what the manager serves). */
export const WEB_DIST = join(WEB_DIR, "dist");

/** What a build made. */
export interface WebBuild {
  /** Paths under web/dist, index.html first. */
  readonly files: readonly string[];
  /** Bytes of JavaScript and CSS together. */
  readonly bytes: number;
  readonly ms: number;
}

/** Builds web/ into `outDir` (default web/dist), replacing what was there. */
export async function buildWeb(outDir = WEB_DIST): Promise<WebBuild> {
  const t0 = Date.now();
  const tag = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const next = `${outDir}.next-${tag}`;
  await rm(next, { recursive: true, force: true });
  const result = await build({
    entryPoints: [join(WEB_DIR, "src/main.tsx")],
    bundle: true,
    outdir: join(next, "assets"),
    // Content-hashed names: the manager can tell browsers to keep them for good, and a
    // new build is picked up by the next load of index.html (never cached).
    entryNames: "[name]-[hash]",
    assetNames: "[name]-[hash]",
    format: "esm",
    platform: "browser",
    target: ["chrome111", "firefox115", "safari16.4"],
    jsx: "automatic",
    jsxImportSource: "preact",
    minify: true,
    sourcemap: "linked",
    legalComments: "linked",
    metafile: true,
    logLevel: "silent",
  });
  const outputs = Object.keys(result.metafile.outputs);
  const name = (ext: string) => {
    const file = outputs.find((f) => f.endsWith(ext) && !f.endsWith(`${ext}.map`));
    if (!file) throw new Error(`esbuild made no ${ext} file`);
    return `/assets/${file.slice(file.lastIndexOf("/") + 1)}`;
  };
  // Gzipped beside each script and stylesheet, once, at build time: the manager serves them
  // to browsers that accept gzip without compressing per request (~240 KiB → ~75 KiB).
  for (const file of outputs) {
    if (file.endsWith(".js") || file.endsWith(".css")) {
      const body = await readFile(file);
      await writeFile(`${file}.gz`, gzipSync(body, { level: 9 }));
    }
  }
  const template = await readFile(join(WEB_DIR, "index.html"), "utf8");
  const html = template.replace("%SCRIPT%", name(".js")).replace("%STYLE%", name(".css"));
  await writeFile(join(next, "index.html"), html);
  const old = `${outDir}.old-${tag}`;
  await rename(outDir, old).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
  });
  await rename(next, outDir);
  await rm(old, { recursive: true, force: true });
  let bytes = 0;
  for (const [file, out] of Object.entries(result.metafile.outputs)) {
    if (file.endsWith(".js") || file.endsWith(".css")) bytes += out.bytes;
  }
  return {
    files: [
      "index.html",
      ...outputs.map((f) => `assets/${f.slice(f.lastIndexOf("/") + 1)}`).sort(),
    ],
    bytes,
    ms: Date.now() - t0,
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const made = await buildWeb();
  process.stdout.write(
    `built web/dist in ${made.ms} ms: ${made.files.length} files, ${(made.bytes / 1024).toFixed(0)} KiB of JS and CSS\n`,
  );
}
