import type { Readable } from "node:stream";

/**
 * Calls `onLine` with each non-empty line of a stream of newline-separated JSON, as
 * Docker's event and stats streams are: one chunk may hold several lines, or part of one.
 */
export function onJsonLines(stream: Readable, onLine: (line: string) => void): void {
  let pending = "";
  stream.on("data", (chunk: Buffer | string) => {
    pending += typeof chunk === "string" ? chunk : chunk.toString("utf8");
    let newline = pending.indexOf("\n");
    while (newline >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line !== "") onLine(line);
      newline = pending.indexOf("\n");
    }
  });
}
