import { printable } from "./printable-text.js";

/**
 * `value` as an error message may show it: JSON-quoted (control characters escaped, and
 * DEL, C1 and bidirectional ones too, which JSON leaves as they are: {@link printable}), at
 * most `max` characters of it, saying how long it was when cut. A lookup id is echoed in
 * NOT_FOUND messages, and a message travels in a header: a 4 MiB id must not come back as a
 * 4 MiB header, nor an escape sequence reach the caller's terminal.
 */
export function quote(value: string, max = 128): string {
  const shown = printable(JSON.stringify(value.length <= max ? value : value.slice(0, max)));
  return value.length <= max ? shown : `${shown}… (${value.length} characters)`;
}
