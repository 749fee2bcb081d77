/**
 * The layering of the manager (docs/architecture.md): scheduler ← core ← rules ← api, store
 * beside core; no module may import, even for types only, one that imports it back.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import test from "ava";

const ROOT = join(import.meta.dirname, "..");
const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*["'](\.{1,2}\/[^"']+)["']/g;

/** Every .ts file under `dir`, relative to the repository. */
function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts"))
    .map((f) => normalize(join(dir, f)));
}

/** The relative imports of each file, as repository paths of .ts files. */
function graph(files: readonly string[]): Map<string, string[]> {
  const edges = new Map<string, string[]>();
  for (const file of files) {
    const text = readFileSync(join(ROOT, file), "utf8");
    const out: string[] = [];
    for (const m of text.matchAll(IMPORT)) {
      const target = normalize(join(dirname(file), m[1] as string)).replace(/\.js$/, ".ts");
      out.push(target);
    }
    edges.set(file, out);
  }
  return edges;
}

/** Import cycles among `files` (each as the list of files around it), found by DFS. */
function cycles(edges: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, "open");
    stack.push(file);
    for (const next of edges.get(file) ?? []) {
      if (!edges.has(next)) continue;
      if (state.get(next) === "open") found.push(stack.slice(stack.indexOf(next)).concat(next));
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(file, "done");
  };
  for (const file of edges.keys()) if (!state.has(file)) visit(file);
  return found;
}

/** The layer of a manager file: its folder under manager/ ("" for the top). */
function layer(file: string): string {
  const parts = relative("manager", file).split("/");
  return parts.length > 1 ? (parts[0] as string) : "";
}

/** Which layers each layer may import (besides itself). */
const ALLOWED: Record<string, readonly string[]> = {
  scheduler: [],
  store: [],
  core: ["scheduler", "store"],
  rules: ["core", "scheduler", "store"],
  api: ["rules", "core", "scheduler", "store"],
  "": ["api", "rules", "core", "scheduler", "store"],
};

test("no import cycle in manager/, worker/, lib/ or cli/", (t) => {
  const files = ["manager", "worker", "lib", "cli"].flatMap(sources);
  const found = cycles(graph(files));
  t.deepEqual(
    found.map((c) => c.join(" → ")),
    [],
  );
});

test("the cycle finder finds a cycle (so the test above can fail)", (t) => {
  const edges = new Map([
    ["a.ts", ["b.ts"]],
    ["b.ts", ["c.ts"]],
    ["c.ts", ["a.ts"]],
  ]);
  t.deepEqual(cycles(edges), [["a.ts", "b.ts", "c.ts", "a.ts"]]);
});

test("manager layers import only the layers below them", (t) => {
  const edges = graph(sources("manager"));
  const wrong: string[] = [];
  for (const [file, targets] of edges) {
    const from = layer(file);
    for (const target of targets) {
      if (!target.startsWith("manager/")) continue;
      const to = layer(target);
      if (to !== from && !(ALLOWED[from] ?? []).includes(to)) wrong.push(`${file} → ${target}`);
    }
  }
  t.deepEqual(wrong, []);
});
