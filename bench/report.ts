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
  /** "defaults", or "≠ defaults [1][3]", each footnote saying one thing that differs. */
  readonly settings: string;
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

/**
 * The distinct things figures were measured with unlike the product as shipped, numbered
 * from 1 in the order of the table: what each footnote [n] says.
 */
export function differences(report: Report): string[] {
  const texts: string[] = [];
  for (const r of report.scenarios) {
    for (const key of figureKeys(r)) {
      for (const text of r.differences?.[key] ?? []) if (!texts.includes(text)) texts.push(text);
    }
  }
  return texts;
}

/** A scenario's figure keys in table order (baseline-only figures included). */
function figureKeys(r: ScenarioResult): string[] {
  return [...new Set([...Object.keys(r.figures), ...Object.keys(r.baseline)])];
}

/** The rows of the table: one per figure of each scenario (baseline-only figures included). */
export function rows(report: Report): Row[] {
  const out: Row[] = [];
  const notes = differences(report);
  for (const r of report.scenarios) {
    const keys = figureKeys(r);
    if (keys.length === 0) {
      out.push({
        scenario: r.name,
        figure: r.note,
        settings: "",
        cube: "—",
        baseline: "—",
        ratio: "—",
        goal: "",
      });
      continue;
    }
    for (const key of keys) {
      const ratio = r.ratio[key];
      const differs = r.differences?.[key] ?? [];
      out.push({
        scenario: r.name,
        figure: key,
        settings:
          differs.length === 0
            ? "defaults"
            : `≠ defaults ${differs.map((d) => `[${notes.indexOf(d) + 1}]`).join("")}`,
        cube: show(r.figures[key]),
        baseline: show(r.baseline[key]),
        ratio: ratio === undefined ? "—" : `${ratio.toFixed(2)}×`,
        goal: goalCell(r, key),
      });
    }
  }
  return out;
}

/** The footnotes of the "settings" column: "[n] unlike the product as shipped: …". */
function footnotes(report: Report): string[] {
  return differences(report).map((text, i) => `[${i + 1}] unlike the product as shipped: ${text}`);
}

/**
 * The report as a terminal table (cli-table3), with the machine above it and, under it,
 * what differs from the product's defaults (the footnotes of the "settings" column) and
 * the notes.
 */
export function renderTable(report: Report): string {
  const table = new Table({
    head: ["scenario", "figure", "settings", "cube", "baseline", "ratio", "goal"],
    style: { head: [], border: [] },
  });
  for (const row of rows(report)) {
    table.push([
      row.scenario,
      row.figure,
      row.settings,
      row.cube,
      row.baseline,
      row.ratio,
      row.goal,
    ]);
  }
  const notes = report.scenarios.map(
    (r) => `- ${r.name} (median of ${r.runs} run${r.runs === 1 ? "" : "s"}): ${r.note}`,
  );
  return [
    `cube benchmarks (${report.mode}), ${report.date}, ${Math.round(report.seconds)} s`,
    `machine: ${machineLine(report.machine)}; load average at start ${report.loadAtStart.map((l) => l.toFixed(2)).join(" ")}`,
    table.toString(),
    ...footnotes(report),
    ...notes,
  ].join("\n");
}

/** The same report as a Markdown table and its footnotes, for the README's Performance section. */
export function renderMarkdown(report: Report): string {
  const lines = [
    "| scenario | figure | settings | cube | baseline | ratio | goal |",
    "|---|---|---|--:|--:|--:|---|",
    ...rows(report).map(
      (r) =>
        `| ${r.scenario} | ${r.figure} | ${r.settings} | ${r.cube} | ${r.baseline} | ${r.ratio} | ${r.goal} |`,
    ),
  ];
  const notes = footnotes(report);
  if (notes.length > 0) lines.push("", ...notes.map((n) => `- ${n}`));
  return lines.join("\n");
}

/** Writes the report as JSON to `path` (creating its folder). */
export async function writeReport(report: Report, path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(report, null, 2)}\n`);
}
