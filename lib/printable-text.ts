/**
 * Text from elsewhere made safe to show on a terminal. What a worker reports (reasons, health
 * and progress messages, its engine's errors, which come from Docker or a registry) and what a
 * manager answers end up printed by `cube`; a control character there is an instruction to the
 * terminal (ESC starts a sequence that recolours, moves the cursor, retitles the window) and a
 * bidirectional override reorders what people read (kubectl's CVE-2021-25743, "Trojan
 * Source"). The manager escapes such characters in worker text when it takes it in, and the
 * CLI again when it prints, for text stored before or answered by an older manager.
 */
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

/** C0 controls (newline and tab among them), DEL and C1 controls. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it matches
export const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Bidirectional marks, embeddings, overrides and isolates (U+061C, U+200E, U+200F,
 * U+202A–U+202E, U+2066–U+2069): they reorder what a terminal shows, so a name could read as
 * another's.
 */
export const BIDI_CHARACTERS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/** Either kind, every occurrence. */
const UNPRINTABLE = new RegExp(
  `[${CONTROL_CHARACTERS.source.slice(1, -1)}${BIDI_CHARACTERS.source.slice(1, -1)}]`,
  "g",
);

/** One character as its escape, `\u001b`: visible, and read back as what it was. */
function escapeOf(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/**
 * `text` with every control character (C0, DEL, C1; newlines and tabs too: the text shows on
 * one line) and every bidirectional mark, override or isolate replaced by its escape, as
 * `\u001b` or `\u202e`; everything else as it is. The same text again changes nothing, so
 * escaping twice (at the manager, then at the CLI) shows what the first one did.
 */
export function printable(text: string): string {
  UNPRINTABLE.lastIndex = 0;
  return UNPRINTABLE.test(text) ? text.replace(UNPRINTABLE, escapeOf) : text;
}

/**
 * A copy of `value` with {@link printable} applied to every string in it, object keys
 * included (labels and env keys are map keys): for printing a message as YAML to people.
 * JSON output needs none of this, its own escaping suffices.
 */
export function printableJson(value: JsonValue): JsonValue {
  if (typeof value === "string") return printable(value);
  if (Array.isArray(value)) return value.map(printableJson);
  if (value === null || typeof value !== "object") return value;
  // fromEntries: a key "__proto__" (a label may be named so) stays a key.
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [printable(k), printableJson(v)]),
  ) as JsonObject;
}
