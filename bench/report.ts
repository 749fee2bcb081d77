import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import Table from "cli-table3";
import { type Machine, machineLine } from "./machine.js";
import { goalId, type ScenarioResult } from "./result.js";
import { round } from "./stats.js";

/** Everything one `npm run bench` wrote. */
export interface Report {
  readonly mode: "full" | "quick";
  /** ISO time the run started. */
  readonly date: string;
  readonly command: string;
  readonly machine: Machine;
  /** 1, 5 and 15 minute load averages when the run started: other work skews the figures. */
  readonly loadAtStart: readonly number[];
  /** Wall time of the whole run, seconds. */
  readonly seconds: number;
  readonly scenarios: readonly ScenarioResult[];
}

interface Row {
  readonly scenario: string;
  readonly figure: string;
  readonly cube: string;
  readonly baseline: string;
  readonly ratio: string;
  readonly goal: string;
}

const show = (value: number | undefined): string =>
  value === undefined || Number.isNaN(value) ? "—" : round(value).toLocaleString("en-US");

/** Which goal (with its verdict) belongs on a figure's row. */
function goalCell(result: ScenarioResult, key: string): string {
  return result.goals
    .filter((g) => g.figure === key)
    .map((g) => {
      const met = result.met[goalId(g)];
      return `${g.text} ${met === null || met === undefined ? "(not judged)" : met ? "✓" : "✗"}`;
    })
    .join("; ");
}

/** The rows of the table: one per figure of each scenario (baseline-only figures included). */
export function rows(report: Report): Row[] {
  const out: Row[] = [];
  for (const r of report.scenarios) {
    const keys = [...new Set([...Object.keys(r.figures), ...Object.keys(r.baseline)])];
    if (keys.length === 0) {
      out.push({
        scenario: r.name,
        figure: r.note,
        cube: "—",
        baseline: "—",
        ratio: "—",
        goal: "",
      });
      continue;
    }
    for (const key of keys) {
      const ratio = r.ratio[key];
      out.push({
        scenario: r.name,
        figure: key,
        cube: show(r.figures[key]),
        baseline: show(r.baseline[key]),
        ratio: ratio === undefined ? "—" : `${ratio.toFixed(2)}×`,
        goal: goalCell(r, key),
      });
    }
  }
  return out;
}

/** The report as a terminal table (cli-table3), with the machine and the notes under it. */
export function renderTable(report: Report): string {
  const table = new Table({
    head: ["scenario", "figure", "cube", "baseline", "ratio", "goal"],
    style: { head: [], border: [] },
  });
  for (const row of rows(report)) {
    table.push([row.scenario, row.figure, row.cube, row.baseline, row.ratio, row.goal]);
  }
  const notes = report.scenarios.map(
    (r) => `- ${r.name} (median of ${r.runs} run${r.runs === 1 ? "" : "s"}): ${r.note}`,
  );
  return [
    `cube benchmarks (${report.mode}), ${report.date}, ${Math.round(report.seconds)} s`,
    `machine: ${machineLine(report.machine)}; load average at start ${report.loadAtStart.map((l) => l.toFixed(2)).join(" ")}`,
    table.toString(),
    ...notes,
  ].join("\n");
}

/** The same report as a Markdown table, for the README's Performance section. */
export function renderMarkdown(report: Report): string {
  const lines = [
    "| scenario | figure | cube | baseline | ratio | goal |",
    "|---|---|--:|--:|--:|---|",
    ...rows(report).map(
      (r) => `| ${r.scenario} | ${r.figure} | ${r.cube} | ${r.baseline} | ${r.ratio} | ${r.goal} |`,
    ),
  ];
  return lines.join("\n");
}

/** Writes the report as JSON to `path` (creating its folder). */
export async function writeReport(report: Report, path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(report, null, 2)}\n`);
}
