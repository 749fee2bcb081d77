/** Bidirectional overrides and isolates, which would reorder what a terminal shows. */
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * `value` as an error message may show it: JSON-quoted (control characters escaped, and
 * bidirectional ones too), at most `max` characters of it, saying how long it was when cut.
 * A lookup id is echoed in NOT_FOUND messages, and a message travels in a header: a 4 MiB id
 * must not come back as a 4 MiB header, nor an escape sequence reach the caller's terminal.
 */
export function quote(value: string, max = 128): string {
  const shown = JSON.stringify(value.length <= max ? value : value.slice(0, max)).replace(
    BIDI,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return value.length <= max ? shown : `${shown}… (${value.length} characters)`;
}
