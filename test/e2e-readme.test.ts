/**
 * The README's quick start, run exactly as written: the test reads the first ```sh
 * block of "## Using cube" from README.md and runs its lines as subprocesses, so the
 * README cannot drift from what works. Only three things are adapted: `cube dev` gets a
 * temporary --data-dir and a free --listen port (the other commands find it through
 * CUBE_MANAGER), the published port 8080 becomes a free one, and `curl` is a fetch.
 * A line the test does not know fails it.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import {
  type CubeResult,
  cubeEnv,
  freePort,
  REPO_ROOT,
  type RunningCube,
  startProcess,
} from "./cli-harness.js";
import { fetchContainer, removeContainers, requireDocker } from "./fixtures.js";

/**
 * The shell lines of the quick start (comments and blank lines removed), and the sample
 * output shown after them.
 */
async function quickStart(): Promise<{ lines: string[]; shown: string }> {
  const readme = await readFile(join(REPO_ROOT, "README.md"), "utf8");
  const section = readme.split(/^## Using cube$/m)[1]?.split(/^## /m)[0];
  if (section === undefined) throw new Error('README.md has no "## Using cube" section');
  const block = /^```sh\n([\s\S]*?)^```$/m.exec(section)?.[1];
  if (block === undefined) throw new Error('"## Using cube" has no ```sh block');
  // The sample output that follows, for what it promises about the output's shape.
  const shown = /^```text\n([\s\S]*?)^```$/m.exec(section)?.[1] ?? "";
  const lines = block
    .split("\n")
    .map((line) => line.replace(/(^|\s+)#.*$/, "").trim())
    .filter((line) => line !== "");
  return { lines, shown };
}

test("the README quick start works as written", async (t) => {
  await requireDocker();
  const { lines, shown } = await quickStart();
  t.log(lines.join("\n"));
  t.true(
    lines.some((l) => /^npx cube dev\b/.test(l)),
    "starts cube dev",
  );
  t.true(
    lines.some((l) => /^npx cube run\b.*--wait\b/.test(l)),
    "runs a task with --wait",
  );

  const dataDir = await mkdtemp(join(tmpdir(), "cube-readme-"));
  const manager = `127.0.0.1:${await freePort()}`;
  const hostPort = String(await freePort());
  const env = cubeEnv({ CUBE_MANAGER: manager });
  const running: RunningCube[] = [];
  let workerId: string | undefined;
  t.teardown(async () => {
    await Promise.all(running.map((p) => p.kill()));
    if (workerId) await removeContainers(`cube.worker=${workerId}`);
    await rm(dataDir, { recursive: true, force: true });
  });

  let dev: RunningCube | undefined;
  let taskId = "";
  const outputs = new Map<string, CubeResult>();
  for (const original of lines) {
    t.false(
      /['"`$|;&<>]/.test(original),
      `no shell syntax, so splitting on spaces is exact: ${original}`,
    );
    const line = original.replaceAll("8080", hostPort);
    const [program, ...args] = line.split(/\s+/);
    if (line === "npm run setup") {
      continue; // Done before the test run (npm test runs it); requireDocker() checked it.
    }
    if (program === "curl") {
      const answer = await fetchContainer(args.at(-1) as string);
      t.is(answer.status, 200, line);
      continue;
    }
    if (program !== "npx" || args[0] !== "cube") {
      t.fail(`the test does not know how to run this README line: ${original}`);
      continue;
    }
    if (args[1] === "dev") {
      dev = startProcess("npx", [...args, "--listen", manager, "--data-dir", dataDir], env);
      running.push(dev);
      const [, id] = await dev.waitFor(/worker (\S+) listening on/, 60_000);
      workerId = id;
      t.regex(dev.stdout(), new RegExp(`manager listening on ${manager.replaceAll(".", "\\.")}`));
      t.regex(dev.stdout(), /Try, in another terminal:/);
      continue;
    }
    const child = startProcess("npx", args, env);
    running.push(child);
    const timer = setTimeout(() => child.signal("SIGKILL"), 90_000);
    const result = await child.exited;
    clearTimeout(timer);
    t.is(result.code, 0, `${original}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
    outputs.set(args[1] as string, result);
    if (args[1] === "run") taskId = result.stdout.trim();
  }

  // What the README promises each command shows.
  const run = outputs.get("run");
  t.regex(run?.stdout ?? "", /^\S+\n$/, "cube run prints the task id");
  t.regex(run?.stderr ?? "", /RUNNING and healthy/);
  const ps = outputs.get("ps")?.stdout ?? "";
  t.regex(ps, /^ID\s+NAME\s+STATE\s+WORKER\s+IMAGE\s+PORTS\s+RESTARTS\s+AGE\n/);
  t.regex(
    ps,
    new RegExp(
      `^${taskId.slice(0, 12)}\\s+web\\s+RUNNING \\(healthy\\)\\s.*127\\.0\\.0\\.1:${hostPort}->80/tcp`,
      "m",
    ),
  );
  const columns = (line: string | undefined) => line?.trim().split(/\s{2,}/);
  t.deepEqual(
    columns(shown.split("\n").find((l) => l.startsWith("ID "))),
    columns(ps.split("\n")[0]),
    "the README shows the columns cube ps prints",
  );
  const logs = outputs.get("logs");
  // httpd -v logs each request on its stderr: the health checks and the curl above.
  t.regex(logs?.stderr ?? "", /response:200/, "cube logs shows the container's stderr");
  t.is(outputs.get("stop")?.stdout, `${taskId}\n`, "cube stop prints the id it stopped");

  // Ctrl-C in the terminal of cube dev stops it cleanly.
  if (dev) {
    dev.signal("SIGINT");
    const ended = await dev.exited;
    // npx itself dies of the SIGINT (as in a terminal); cube dev under it exits 0.
    t.true(ended.code === 0 || ended.signal === "SIGINT", ended.stderr);
    t.regex(ended.stderr, /cube dev: stopped\n/);
  }
});
