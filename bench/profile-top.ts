/**
 * Reads a V8 .cpuprofile (node --cpu-prof, or bench/window-profiler.ts) and lists the
 * functions with the most self time, or the most total time (self plus callees), over the
 * whole profile or a window of it: where the manager's CPU went. Usable alone:
 * `node --import=tsx bench/profile-top.ts FILE.cpuprofile [N] [--from=S] [--to=S] [--total]`
 * (S: seconds since the profile started).
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

/** A V8 .cpuprofile, as read. */
export interface Profile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

/** One line of the summary. */
export interface Frame {
  /** "functionName (file:line)"; "functionName (file)" in a total-time list. */
  readonly frame: string;
  /** Share of the samples in the window, percent: self time, or total time with `total`. */
  readonly selfPercent: number;
}

/** Which samples count, and how. */
export interface TopOptions {
  /** Seconds since the profile started: samples before are left out. Default 0. */
  readonly fromS?: number;
  /** Seconds since the profile started: samples after are left out. Default: the end. */
  readonly toS?: number;
  /**
   * Total time instead of self time: a sample counts for every function on its stack (once
   * each), so a caller shows what it costs with everything it calls.
   */
  readonly total?: boolean;
}

function frameName(node: ProfileNode, withLine: boolean): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url
    .replace(/^file:\/\//, "")
    .replace(/^.*node_modules\//, "")
    .replace(/^.*\/work\/main\//, "");
  const where = file ? (withLine ? `${file}:${lineNumber + 1}` : file) : "native";
  return `${functionName || "(anonymous)"} (${where})`;
}

/** Reads the profile at `path` once, for as many {@link topFrames} summaries as wanted. */
export async function readProfile(path: string): Promise<Profile> {
  return JSON.parse(await readFile(path, "utf8")) as Profile;
}

/** The `n` frames with the most self (or total) time in `profile`. */
export function topFrames(profile: Profile, n = 20, options: TopOptions = {}): Frame[] {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const c of node.children ?? []) parent.set(c, node.id);
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const fromUs = (options.fromS ?? 0) * 1e6;
  const toUs = (options.toS ?? Number.POSITIVE_INFINITY) * 1e6;
  // A sample with no timing (an old profile without timeDeltas) counts as one tick.
  const weights = new Map<number, number>();
  let at = 0;
  for (let i = 0; i < samples.length; i++) {
    at += deltas[i] ?? 0;
    if (at < fromUs || at > toUs) continue;
    const id = samples[i] as number;
    weights.set(id, (weights.get(id) ?? 0) + (deltas.length > 0 ? (deltas[i + 1] ?? 0) : 1));
  }
  if (samples.length === 0)
    for (const node of profile.nodes) weights.set(node.id, node.hitCount ?? 0);
  const byFrame = new Map<string, number>();
  let sum = 0;
  for (const [id, weight] of weights) {
    if (weight === 0) continue;
    sum += weight;
    if (!options.total) {
      const key = frameName(nodes.get(id) as ProfileNode, true);
      byFrame.set(key, (byFrame.get(key) ?? 0) + weight);
      continue;
    }
    // Recursion puts a function on the stack more than once: it counts once per sample.
    const seen = new Set<string>();
    for (let node = nodes.get(id); node; node = nodes.get(parent.get(node.id) ?? -1)) {
      if (node.callFrame.functionName === "(root)") continue;
      const key = frameName(node, false);
      if (seen.has(key)) continue;
      seen.add(key);
      byFrame.set(key, (byFrame.get(key) ?? 0) + weight);
    }
  }
  return [...byFrame.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, n)
    .map(([frame, weight]) => ({ frame, selfPercent: Math.round((weight / sum) * 1000) / 10 }));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
  const [path, n] = args.filter((a) => !a.startsWith("--"));
  if (!path) {
    process.stderr.write(
      "usage: profile-top.ts FILE.cpuprofile [N] [--from=S] [--to=S] [--total]\n",
    );
    process.exit(2);
  }
  const from = flag("from");
  const to = flag("to");
  const frames = topFrames(await readProfile(path), Number(n ?? 25), {
    ...(from === undefined ? {} : { fromS: Number(from) }),
    ...(to === undefined ? {} : { toS: Number(to) }),
    total: args.includes("--total"),
  });
  for (const f of frames) {
    process.stdout.write(`${f.selfPercent.toFixed(1).padStart(5)}%  ${f.frame}\n`);
  }
}
