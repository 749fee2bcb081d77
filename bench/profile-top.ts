/**
 * Reads a V8 .cpuprofile (node --cpu-prof) and lists the functions with the most self
 * time, for the report of where the manager's CPU went. Usable alone:
 * `node --import=tsx bench/profile-top.ts FILE.cpuprofile [N]`.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

/** One line of the summary. */
export interface Frame {
  /** "functionName (file:line)". */
  readonly frame: string;
  /** Share of all samples, percent. */
  readonly selfPercent: number;
}

/** The `n` frames with the most self time in the profile at `path`. */
export async function topFrames(path: string, n = 20): Promise<Frame[]> {
  const profile = JSON.parse(await readFile(path, "utf8")) as {
    nodes: ProfileNode[];
    samples?: number[];
  };
  const hits = new Map<number, number>();
  for (const id of profile.samples ?? []) hits.set(id, (hits.get(id) ?? 0) + 1);
  const byFrame = new Map<string, number>();
  let total = 0;
  for (const node of profile.nodes) {
    const count = hits.get(node.id) ?? node.hitCount ?? 0;
    if (count === 0) continue;
    total += count;
    const { functionName, url, lineNumber } = node.callFrame;
    const file = url.replace(/^file:\/\//, "").replace(/^.*node_modules\//, "");
    const where = file ? `${file.replace(/^.*\/work\/main\//, "")}:${lineNumber + 1}` : "native";
    const key = `${functionName || "(anonymous)"} (${where})`;
    byFrame.set(key, (byFrame.get(key) ?? 0) + count);
  }
  return [...byFrame.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([frame, count]) => ({ frame, selfPercent: Math.round((count / total) * 1000) / 10 }));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [path, n] = process.argv.slice(2);
  if (!path) {
    process.stderr.write("usage: profile-top.ts FILE.cpuprofile [N]\n");
    process.exit(2);
  }
  for (const f of await topFrames(path, Number(n ?? 25))) {
    process.stdout.write(`${f.selfPercent.toFixed(1).padStart(5)}%  ${f.frame}\n`);
  }
}
