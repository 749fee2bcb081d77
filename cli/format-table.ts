import Table from "cli-table3";

// No borders, two spaces between columns: the look of `docker ps` and `kubectl get`.
const BORDERLESS = {
  top: "",
  "top-mid": "",
  "top-left": "",
  "top-right": "",
  bottom: "",
  "bottom-mid": "",
  "bottom-left": "",
  "bottom-right": "",
  left: "",
  "left-mid": "",
  mid: "",
  "mid-mid": "",
  right: "",
  "right-mid": "",
  middle: "  ",
};

/**
 * Renders rows as an aligned, borderless table with a header line (omitted when `head`
 * is empty), without trailing spaces, ending in a newline. Cells may carry ANSI colours:
 * widths are measured without them.
 */
export function renderTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const table = new Table({
    head: [...head],
    chars: BORDERLESS,
    style: { head: [], border: [], "padding-left": 0, "padding-right": 0 },
  });
  for (const row of rows) table.push([...row]);
  if (head.length === 0 && rows.length === 0) return "";
  return `${table
    .toString()
    .split("\n")
    .map((line) => line.trimEnd())
    .join("\n")}\n`;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI colour codes
const ANSI = /\x1b\[[0-9;]*m/g;

/** The width of a cell as shown, colour codes left out. */
export function visibleWidth(cell: string): number {
  return cell.replace(ANSI, "").length;
}

/** The column widths {@link renderTable} gives these rows (header included). */
export function columnWidths(
  head: readonly string[],
  rows: readonly (readonly string[])[],
): number[] {
  const widths = head.map(visibleWidth);
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, visibleWidth(cell));
    });
  }
  return widths;
}

/**
 * One row laid out on given column widths, as a line: a row printed after a table lines
 * up with it (a longer cell pushes the rest right rather than being cut).
 */
export function renderRow(row: readonly string[], widths: readonly number[]): string {
  return `${row
    .map((cell, i) =>
      i === row.length - 1
        ? cell
        : cell + " ".repeat(Math.max(0, (widths[i] ?? 0) - visibleWidth(cell))),
    )
    .join("  ")
    .trimEnd()}\n`;
}
