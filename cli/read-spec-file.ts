import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import { CliError, usageError } from "./cli-error.js";

/** The largest task or job file read: the manager refuses requests over 4 MiB anyway. */
export const MAX_SPEC_FILE_BYTES = 4 * 1024 * 1024;

/**
 * The text of a task or job file (`-f FILE`, or `-` for standard input), read up to
 * {@link MAX_SPEC_FILE_BYTES}: a usage error (exit 2) naming the file when it cannot be read
 * or is larger, so that `-f /dev/zero` or a wrong multi-gigabyte file fails at once instead
 * of filling the memory.
 */
export async function readSpecFile(file: string, stdin: Readable = process.stdin): Promise<string> {
  const name = file === "-" ? "stdin" : file;
  const source = file === "-" ? stdin : createReadStream(file);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of source) {
      const bytes = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
      size += bytes.length;
      if (size > MAX_SPEC_FILE_BYTES) {
        throw usageError(
          `${name}: larger than ${MAX_SPEC_FILE_BYTES / 1024 / 1024} MiB: not a task or job file`,
        );
      }
      chunks.push(bytes);
    }
  } catch (error) {
    if (source !== stdin) source.destroy();
    if (error instanceof CliError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw usageError(`cannot read ${name}: ${code ?? (error as Error).message}`);
  }
  return Buffer.concat(chunks).toString("utf8");
}
