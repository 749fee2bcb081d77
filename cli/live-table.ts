import { columnWidths, renderRow, renderTable } from "./format-table.js";
import type { Io } from "./io.js";

/**
 * A table that follows a watch stream. On a terminal it is redrawn in place (at most
 * every 100 ms); piped, it prints the first table, then one row per change on the same
 * columns, so a script reading lines sees each change once.
 */
export class LiveTable {
  readonly #rows = new Map<string, string[]>();
  readonly #tty: boolean;
  #timer: NodeJS.Timeout | undefined;
  #started = false;
  #widths: number[] = [];

  constructor(
    private readonly io: Io,
    private readonly head: readonly string[],
    /** Widths the columns get at least when piped, so rows that come later line up. */
    private readonly minWidths: readonly number[] = [],
  ) {
    this.#tty = io.stdout.isTTY === true;
  }

  /** Shows the rows known at the start. */
  start(rows: Iterable<[string, string[]]>): void {
    for (const [key, row] of rows) this.#rows.set(key, row);
    this.#started = true;
    if (this.#tty) this.#redraw();
    else {
      const rows = [...this.#rows.values()];
      // Later rows keep the first table's columns: make them wide enough for typical values.
      this.#widths = columnWidths(this.head, rows).map((w, i) =>
        Math.max(w, this.minWidths[i] ?? 0),
      );
      this.io.stdout.write(
        renderRow(this.head, this.#widths) + rows.map((r) => renderRow(r, this.#widths)).join(""),
      );
    }
  }

  /** Adds or replaces a row; a row equal to the one shown is not shown again. */
  set(key: string, row: string[]): void {
    if (this.#rows.get(key)?.join("\0") === row.join("\0")) return;
    this.#rows.set(key, row);
    if (!this.#started) return;
    if (this.#tty) this.#schedule();
    else this.io.stdout.write(renderRow(row, this.#widths));
  }

  /** Drops a row (it no longer matches the filter); piped output does not show removals. */
  delete(key: string): void {
    if (this.#rows.delete(key) && this.#tty && this.#started) this.#schedule();
  }

  /** Stops pending redraws. */
  close(): void {
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#tty && this.#started) this.#redraw();
  }

  #schedule(): void {
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#redraw();
    }, 100);
  }

  #redraw(): void {
    // Home the cursor and clear the screen: the `watch` look, without flicker from scrolling.
    this.io.stdout.write(`\x1b[H\x1b[2J${renderTable(this.head, [...this.#rows.values()])}`);
  }
}
