import { columnWidths, renderRow, renderTable } from "./format-table.js";
import type { Io } from "./io.js";

/** How often a table on a terminal is redrawn with nothing new, so AGE and LAST SEEN move. */
const REFRESH_MS = 1000;

/**
 * A table that follows a watch stream. On a terminal it is redrawn in place (at most
 * every 100 ms on changes, and once a second so ages keep up); piped, it prints the first
 * table, then one row per change on the same columns, so a script reading lines sees
 * each change once.
 */
export class LiveTable<T> {
  readonly #items = new Map<string, T>();
  readonly #shown = new Map<string, string>();
  readonly #tty: boolean;
  #timer: NodeJS.Timeout | undefined;
  #refresh: NodeJS.Timeout | undefined;
  #widths: number[] = [];
  #started = false;
  #note: string | undefined;

  constructor(
    private readonly io: Io,
    private readonly head: readonly string[],
    /** Renders an item as a row, at the time of drawing. */
    private readonly row: (item: T) => string[],
    /** Widths the columns get at least when piped, so rows that come later line up. */
    private readonly minWidths: readonly number[] = [],
  ) {
    this.#tty = io.stdout.isTTY === true;
  }

  /** Shows the items known at the start. */
  start(items: Iterable<[string, T]>): void {
    this.#started = true;
    for (const [key, item] of items) this.#items.set(key, item);
    if (this.#tty) {
      this.#redraw();
      this.#refresh = setInterval(() => this.#redraw(), REFRESH_MS);
      return;
    }
    const rows = [...this.#items].map(([key, item]) => {
      const row = this.row(item);
      this.#shown.set(key, row.join("\0"));
      return row;
    });
    // Later rows keep the first table's columns: make them wide enough for typical values.
    this.#widths = columnWidths(this.head, rows).map((w, i) => Math.max(w, this.minWidths[i] ?? 0));
    this.io.stdout.write(
      renderRow(this.head, this.#widths) + rows.map((r) => renderRow(r, this.#widths)).join(""),
    );
  }

  /** Adds or replaces an item; piped, a row equal to the one last printed is not printed again. */
  set(key: string, item: T): void {
    this.#items.set(key, item);
    if (this.#tty) {
      this.#schedule();
      return;
    }
    const row = this.row(item);
    const text = row.join("\0");
    if (this.#shown.get(key) === text) return;
    this.#shown.set(key, text);
    this.io.stdout.write(renderRow(row, this.#widths));
  }

  /** Drops an item (it no longer matches the filter); piped output does not show removals. */
  delete(key: string): void {
    if (this.#items.delete(key) && this.#tty) this.#schedule();
  }

  /**
   * A line shown under the table on a terminal until cleared (undefined): the manager lost,
   * while the rows stand still. Piped, nothing (the command says it on stderr).
   */
  note(text: string | undefined): void {
    this.#note = text;
    if (this.#tty && this.#started) this.#schedule();
  }

  /**
   * Makes `items` the whole table (a list read again after a reconnect): the items it leaves
   * out are dropped, the others set as by {@link set}.
   */
  replace(items: Iterable<[string, T]>): void {
    const fresh = new Map(items);
    for (const key of [...this.#items.keys()]) if (!fresh.has(key)) this.delete(key);
    for (const [key, item] of fresh) this.set(key, item);
  }

  /** Stops redrawing, after a last redraw on a terminal (none when it never started). */
  close(): void {
    clearTimeout(this.#timer);
    clearInterval(this.#refresh);
    if (this.#tty && this.#started) this.#redraw();
  }

  #schedule(): void {
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#redraw();
    }, 100);
  }

  #redraw(): void {
    const rows = [...this.#items.values()].map(this.row);
    // Home the cursor and clear the screen: the `watch` look, without scrolling.
    const note = this.#note ? `\n${this.#note}\n` : "";
    this.io.stdout.write(`\x1b[H\x1b[2J${renderTable(this.head, rows)}${note}`);
  }
}
