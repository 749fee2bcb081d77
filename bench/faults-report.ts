/** The fault suite's results: one row per figure, each next to its goal from issue 17. */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import Table from "cli-table3";
import { type Machine, machineLine } from "./machine.js";

/** A goal from issue 17's Goals: the figure must not exceed `max`. */
export interface FaultGoal {
  readonly max: number;
  /** For people: "≤ 5,000 ms", "0". */
  readonly text: string;
}

/** One measured figure of a fault. */
export interface FaultFigure {
  readonly label: string;
  /** null when it could not be measured (the fault run failed before it). */
  readonly value: number | null;
  readonly unit: "ms" | "";
  readonly goal?: FaultGoal;
  /** Why the goal is missed, when the suite knows (set only when missed). */
  readonly why?: string;
}

/** One injected fault and what it did. */
export interface FaultResult {
  readonly name: string;
  /** How it was injected and measured. */
  readonly how: string;
  readonly figures: FaultFigure[];
  /** Set when the fault could not be run to the end (what went wrong), or was skipped. */
  readonly error?: string;
  readonly skipped?: boolean;
}

export interface FaultReport {
  readonly mode: "full" | "quick";
  readonly date: string;
  readonly command: string;
  readonly machine: Machine;
  readonly loadAtStart: readonly number[];
  readonly seconds: number;
  /** The manager's liveness settings (the product's defaults). */
  readonly settings: string;
  readonly faults: readonly FaultResult[];
}

/** met / MISSED / — for a figure. */
export function verdict(f: FaultFigure): "met" | "MISSED" | "" {
  if (!f.goal) return "";
  if (f.value === null) return "MISSED";
  return f.value <= f.goal.max ? "met" : "MISSED";
}

const show = (f: FaultFigure) =>
  f.value === null
    ? "—"
    : `${Math.round(f.value).toLocaleString("en-US")}${f.unit ? ` ${f.unit}` : ""}`;

interface Row {
  fault: string;
  figure: string;
  value: string;
  goal: string;
  verdict: string;
}

function rows(report: FaultReport): Row[] {
  const out: Row[] = [];
  for (const r of report.faults) {
    if (r.error && r.figures.length === 0) {
      out.push({
        fault: r.name,
        figure: r.skipped ? "SKIPPED" : "FAILED",
        value: "—",
        goal: "",
        verdict: r.error,
      });
      continue;
    }
    for (const f of r.figures) {
      const v = verdict(f);
      out.push({
        fault: r.name,
        figure: f.label,
        value: show(f),
        goal: f.goal?.text ?? "",
        verdict:
          v === "MISSED"
            ? `✗ MISSED${f.value === null ? " (not measured)" : ""}${f.why ? `: ${f.why}` : ""}`
            : v === "met"
              ? "✓"
              : "",
      });
    }
    if (r.error && r.figures.length > 0) {
      out.push({ fault: r.name, figure: "FAILED", value: "—", goal: "", verdict: r.error });
    }
  }
  return out;
}

/** Goals missed, one line each, for the end of the printout. */
export function missed(report: FaultReport): string[] {
  const out: string[] = [];
  for (const r of report.faults) {
    if (r.error && !r.skipped) out.push(`${r.name}: FAILED: ${r.error}`);
    for (const f of r.figures) {
      if (verdict(f) === "MISSED") {
        out.push(
          `${r.name}: ${f.label} = ${show(f)}, goal ${f.goal?.text}${f.why ? ` — ${f.why}` : ""}`,
        );
      }
    }
  }
  return out;
}

export function renderTable(report: FaultReport): string {
  const table = new Table({
    head: ["fault", "figure", "measured", "goal (issue 17)", "verdict"],
    style: { head: [], border: [] },
    colWidths: [22, 42, 11, 16, 56],
    wordWrap: true,
  });
  for (const r of rows(report)) table.push([r.fault, r.figure, r.value, r.goal, r.verdict]);
  const miss = missed(report);
  return [
    `cube fault suite (${report.mode}), ${report.date}, ${Math.round(report.seconds)} s`,
    `machine: ${machineLine(report.machine)}; load average at start ${report.loadAtStart.map((l) => l.toFixed(2)).join(" ")}`,
    `manager: ${report.settings}`,
    table.toString(),
    ...report.faults.map((r) => `- ${r.name}: ${r.how}`),
    "",
    miss.length === 0 ? "every goal met" : `goals missed (${miss.length}):`,
    ...miss.map((m) => `  ✗ ${m}`),
  ].join("\n");
}

export function renderMarkdown(report: FaultReport): string {
  const esc = (s: string) => s.replaceAll("|", "\\|");
  return [
    `Fault suite (${report.mode}, \`${report.command}\`), ${report.date}; manager: ${report.settings}.`,
    "",
    "| fault | figure | measured | goal (issue 17) | verdict |",
    "|---|---|--:|---|---|",
    ...rows(report).map(
      (r) =>
        `| ${esc(r.fault)} | ${esc(r.figure)} | ${r.value} | ${esc(r.goal)} | ${esc(r.verdict)} |`,
    ),
    "",
    ...report.faults.map((r) => `- **${r.name}**: ${r.how}`),
  ].join("\n");
}

export async function writeFaultReport(report: FaultReport, jsonPath: string): Promise<void> {
  await mkdir(dirname(jsonPath), { recursive: true });
  await writeFile(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(jsonPath.replace(/\.json$/, ".md"), `${renderMarkdown(report)}\n`);
}
