import { parse as parseYaml } from "yaml";

/**
 * The document of a task or job file: JSON when its name ends in .json, else YAML. A syntax
 * error throws one line naming the file, where and what ("web.yaml: Map keys must be unique
 * at line 4, column 1 (name: b)"): the YAML parser's own message runs on over several lines
 * with the source and a caret, of which a CLI error shows only the first.
 */
export function parseDocument(text: string, fileName: string): unknown {
  try {
    return /\.json$/i.test(fileName) ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    const [first = "", ...rest] = (error as Error).message.split("\n");
    // The line the caret points at is the one above it (the parser shows one before too).
    const caret = rest.findIndex((line) => /^\s*\^+\s*$/.test(line));
    const source = caret > 0 ? rest[caret - 1]?.trim() : undefined;
    const what = first.replace(/:\s*$/, "");
    throw new Error(`${fileName}: ${what}${source ? ` (${source.slice(0, 80)})` : ""}`);
  }
}
