/**
 * The `cube` executable (bin/cube.js loads it through tsx; `npm run cube -- …` runs it
 * directly). Client commands end with an explicit exit once their output is flushed,
 * because the HTTP/2 connection to the manager would otherwise keep the process alive;
 * `cube dev`, `cube manager` and `cube worker` run until a signal.
 */
import { processIo } from "./io.js";
import { runCli } from "./run-cli.js";

// `cube ps | head -1` closes the pipe early: that is the reader's choice, not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(0);
    throw error;
  });
}

const code = await runCli(process.argv.slice(2), processIo());
await Promise.all(
  [process.stdout, process.stderr].map(
    (stream) => new Promise<void>((resolve) => stream.write("", () => resolve())),
  ),
);
process.exit(code);
