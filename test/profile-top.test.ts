/** bench/profile-top.ts: self and total time over a window of a V8 profile. */
import { writeFile } from "node:fs/promises";
import test from "ava";
import { readProfile, topFrames } from "../bench/profile-top.js";
import { tempDir } from "./fixtures.js";

const frame = (functionName: string, url = "file:///work/main/manager/x.ts") => ({
  functionName,
  url,
  lineNumber: 0,
});

// (root) → outer → inner, and (root) → other. Samples 10 ms apart: 0–20 ms in inner, then
// 30–50 ms in other, then outer itself at 60 ms.
const profile = {
  nodes: [
    { id: 1, callFrame: frame("(root)", ""), children: [2, 4] },
    { id: 2, callFrame: frame("outer"), children: [3] },
    { id: 3, callFrame: frame("inner") },
    { id: 4, callFrame: frame("other", "file:///x/node_modules/lib/other.js") },
  ],
  samples: [3, 3, 3, 4, 4, 4, 2, 2],
  timeDeltas: [0, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000],
};

test("self time, total time and a time window", async (t) => {
  const path = `${await tempDir(t)}/p.cpuprofile`;
  await writeFile(path, JSON.stringify(profile));
  const read = await readProfile(path);
  const self = topFrames(read, 10);
  t.deepEqual(
    self.map((f) => [f.frame, f.selfPercent]),
    [
      ["inner (manager/x.ts:1)", 42.9],
      ["other (lib/other.js:1)", 42.9],
      ["outer (manager/x.ts:1)", 14.3],
    ],
  );
  const total = topFrames(read, 10, { total: true });
  t.deepEqual(
    total.map((f) => [f.frame, f.selfPercent]),
    [
      ["outer (manager/x.ts)", 57.1],
      ["inner (manager/x.ts)", 42.9],
      ["other (lib/other.js)", 42.9],
    ],
  );
  // The first 25 ms hold only inner's samples.
  const early = topFrames(read, 10, { toS: 0.025, total: true });
  t.deepEqual(
    early.map((f) => [f.frame, f.selfPercent]),
    [
      ["inner (manager/x.ts)", 100],
      ["outer (manager/x.ts)", 100],
    ],
  );
});
