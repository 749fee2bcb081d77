#!/usr/bin/env -S node --max-semi-space-size=64
// The `cube` executable: registers tsx so the TypeScript sources run as they are (no
// build step), then hands over to cli/main.ts. A 64 MiB young generation: the manager
// allocates fast under load, and the default 16 MiB spent a third more time in GC.
//
// cube runs on the Node 24 LTS that `npm ci` installs into node_modules (the `node`
// package). `npx cube` and npm scripts find it first on PATH; started any other way on an
// older Node, this file runs itself again on the project's own.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  const own = fileURLToPath(new URL("../node_modules/node/bin/node", import.meta.url));
  if (!existsSync(own)) {
    process.stderr.write(
      `cube needs Node 24 (this is ${process.versions.node}): run \`npm run setup\` in the clone first\n`,
    );
    process.exit(1);
  }
  const child = spawn(
    own,
    ["--max-semi-space-size=64", fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    { stdio: "inherit" },
  );
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(signal, () => child.kill(signal));
  }
  child.on("exit", (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../cli/main.ts");
}
