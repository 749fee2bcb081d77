import test from "ava";
import { type Report, renderMarkdown, renderTable, rows } from "../bench/report.js";
import { failed, finish, type ScenarioOutcome } from "../bench/result.js";
import { median, medianOfRuns, percentile, round } from "../bench/stats.js";

test("percentile is nearest-rank: always one of the samples", (t) => {
  const values = [5, 1, 4, 2, 3, 6, 7, 8, 9, 10];
  t.is(percentile(values, 50), 5);
  t.is(percentile(values, 95), 10);
  t.is(percentile(values, 99), 10);
  t.is(percentile(values, 0), 1);
  t.is(percentile([42], 99), 42);
  t.true(Number.isNaN(percentile([], 50)));
  // 20 samples: p95 is the 19th, not the largest.
  t.is(
    percentile(
      [...Array(20).keys()].map((i) => i + 1),
      95,
    ),
    19,
  );
});

test("median of odd and even counts, and per-key medians of runs", (t) => {
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 3, 2]), 2.5);
  t.true(Number.isNaN(median([])));
  t.deepEqual(medianOfRuns([{ a: 1, b: 10 }, { a: 3 }, { a: 2, b: 30 }]), { a: 2, b: 20 });
});

test("round keeps three significant digits below 100", (t) => {
  t.is(round(1.23456), 1.23);
  t.is(round(99.95), 100);
  t.is(round(1234.5), 1235);
});

const outcome: ScenarioOutcome = {
  name: "latency",
  title: "t",
  figures: { "p50 (ms)": 115, "p95 (ms)": 130, count: 3 },
  baseline: { "p50 (ms)": 100, "p95 (ms)": 100 },
  runs: 3,
  note: "n",
  goals: [
    { figure: "p50 (ms)", ofRatio: true, kind: "max", limit: 1.15, text: "≤ 1.15× bare" },
    { figure: "p95 (ms)", ofRatio: false, kind: "min", limit: 200, text: "≥ 200" },
  ],
};

test("goals with the same text on different figures are judged apart", (t) => {
  const twin: ScenarioOutcome = {
    ...outcome,
    goals: [
      { figure: "p50 (ms)", kind: "max", limit: 200, text: "≤ 200" },
      { figure: "missing", kind: "max", limit: 200, text: "≤ 200" },
    ],
  };
  const r = finish(twin, true);
  t.is(r.met["p50 (ms): ≤ 200"], true);
  t.is(r.met["missing: ≤ 200"], null);
});

test("finish works out ratios and judges goals only when asked", (t) => {
  const judged = finish(outcome, true);
  t.deepEqual(judged.ratio, { "p50 (ms)": 1.15, "p95 (ms)": 1.3 });
  t.is(judged.met["p50 (ms): ≤ 1.15× bare"], true);
  t.is(judged.met["p95 (ms): ≥ 200"], false);
  const quick = finish(outcome, false);
  t.is(quick.met["p50 (ms): ≤ 1.15× bare"], null);
});

test("a failed scenario has no figures and says why", (t) => {
  const r = failed("restart", "t", new Error("boom"));
  t.is(r.runs, 0);
  t.is(r.note, "FAILED: boom");
});

test("the table and the Markdown show every figure with its baseline, ratio and verdict", (t) => {
  const report: Report = {
    mode: "full",
    date: "2026-01-01T00:00:00.000Z",
    command: "npm run bench",
    machine: {
      cpu: "cpu",
      cores: 2,
      memoryGiB: 4,
      kernel: "6",
      node: "v20",
      docker: "20.10",
      virtualized: false,
    },
    loadAtStart: [0.5, 0.4, 0.3],
    seconds: 1,
    scenarios: [finish(outcome, true), failed("restart", "t", new Error("boom"))],
  };
  const r = rows(report);
  t.is(r.length, 4);
  t.deepEqual(r[0], {
    scenario: "latency",
    figure: "p50 (ms)",
    settings: "defaults",
    cube: "115",
    baseline: "100",
    ratio: "1.15×",
    goal: "≤ 1.15× bare ✓",
  });
  t.is(r[1]?.goal, "≥ 200 ✗");
  t.is(r[2]?.baseline, "—");
  t.is(r[3]?.figure, "FAILED: boom");
  t.regex(renderTable(report), /median of 3 runs/);
  t.regex(renderTable(report), /load average at start 0\.50 0\.40 0\.30/);
  const md = renderMarkdown(report);
  t.regex(md, /^\| scenario \| figure \|/);
  t.regex(md, /\| latency \| p50 \(ms\) \| defaults \| 115 \| 100 \| 1\.15× \| ≤ 1\.15× bare ✓ \|/);
});

test("a figure measured unlike the product as shipped says so next to it, with a footnote", (t) => {
  const differs: ScenarioOutcome = {
    ...outcome,
    name: "throughput",
    differences: {
      "p50 (ms)": ["heartbeat 2 s"],
      "p95 (ms)": ["heartbeat 2 s"],
      count: ["in-process", "heartbeat 2 s"],
    },
  };
  const report: Report = {
    mode: "quick",
    date: "2026-01-01T00:00:00.000Z",
    command: "npm run bench:quick",
    machine: {
      cpu: "cpu",
      cores: 2,
      memoryGiB: 4,
      kernel: "6",
      node: "v24",
      docker: "20.10",
      virtualized: false,
    },
    loadAtStart: [0, 0, 0],
    seconds: 1,
    scenarios: [finish(outcome, false), finish(differs, false)],
  };
  const r = rows(report);
  t.deepEqual(
    r.map((row) => row.settings),
    ["defaults", "defaults", "defaults", "≠ defaults [1]", "≠ defaults [1]", "≠ defaults [2][1]"],
  );
  const table = renderTable(report);
  t.regex(table, /\[1\] unlike the product as shipped: heartbeat 2 s/);
  t.regex(table, /\[2\] unlike the product as shipped: in-process/);
  const md = renderMarkdown(report);
  t.regex(md, /\| throughput \| count \| ≠ defaults \[2\]\[1\] \| 3 \|/);
  t.regex(md, /^- \[1\] unlike the product as shipped: heartbeat 2 s$/m);
});
