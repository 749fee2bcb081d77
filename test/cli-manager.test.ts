/**
 * `cube` commands run in this process (runCli, as bin/cube.js does) against a real manager on
 * 127.0.0.1:0: a watch of a job that does not exist, and addresses and durations refused
 * before anything is dialled. Ctrl-C in the middle of `cube stop A B C --wait` is in
 * cli-process.test.ts, with a real SIGINT to a real process.
 */
import { join } from "node:path";
import test from "ava";
import { runCli } from "../cli/run-cli.js";
import { captureIo, freePort } from "./cli-harness.js";
import { startTestManager, tempDir } from "./fixtures.js";

/** What a command run in process left. */
interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `cube args…` in this process with a config file of its own (none: the developer's is
 * never read). A Ctrl-C comes after `deadlineMs`, so that a command that would never end fails
 * the test instead of hanging it.
 */
async function inProcess(
  t: { teardown(fn: () => unknown): void },
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; deadlineMs?: number } = {},
): Promise<Ran> {
  const interrupt = new AbortController();
  const env = { CUBE_CONFIG: join(await tempDir(t), "config.json"), ...options.env };
  const io = { ...captureIo(env), interrupted: interrupt.signal };
  const timer = setTimeout(() => interrupt.abort(), options.deadlineMs ?? 10_000);
  try {
    const code = await runCli(args, io);
    return { code, stdout: io.out(), stderr: io.err() };
  } finally {
    clearTimeout(timer);
  }
}

test("job status --watch of a job that does not exist: exit 4 at once, as without --watch", async (t) => {
  const m = await startTestManager(t);
  const auth = ["--manager", m.address, "--token", m.adminToken as string];
  const started = Date.now();
  const [plain, watched] = await Promise.all([
    inProcess(t, ["job", "status", "nope", ...auth]),
    inProcess(t, ["job", "status", "nope", "--watch", ...auth], { deadlineMs: 5000 }),
  ]);
  t.is(plain.code, 4);
  t.regex(plain.stderr, /^cube: name: job "nope" not found\n$/);
  t.is(watched.code, 4, watched.stderr);
  t.is(watched.stderr, plain.stderr);
  t.is(watched.stdout, "");
  t.true(Date.now() - started < 4000, "it did not wait for the job to appear");
});

test("a manager address that cannot be dialled: named, with what is wrong, exit 2", async (t) => {
  const flag = await inProcess(t, ["ps", "--manager", "127.0.0.1:99999"]);
  t.is(flag.code, 2);
  t.is(
    flag.stderr,
    'cube: --manager "127.0.0.1:99999" is not a manager address: port 99999 is out of range (1-65535)\n',
  );
  const env = await inProcess(t, ["job", "ls"], { env: { CUBE_MANAGER: "manager:http" } });
  t.is(env.code, 2);
  t.is(
    env.stderr,
    'cube: CUBE_MANAGER "manager:http" is not a manager address: port "http" is not a number\n',
  );
  const version = await inProcess(t, ["version", "--manager", "bad host:5555"]);
  t.is(version.code, 2);
  t.regex(
    version.stderr,
    /^cube: --manager "bad host:5555" is not a manager address: it contains a space/,
  );
  // Good addresses still get as far as dialling: nothing listens there, exit 5.
  const port = await freePort();
  for (const address of [`127.0.0.1:${port}`, `[::1]:${port}`, `http://127.0.0.1:${port}`]) {
    const r = await inProcess(t, ["ps", "--manager", address]);
    t.is(r.code, 5, `${address}: ${r.stderr}`);
  }
});

test("a token's --ttl may be longer than a timer can wait; --timeout may not", async (t) => {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  // Parsed, then refused by nobody: the manager is not there (exit 5, not a usage error).
  const ttl = await inProcess(t, [
    "token",
    "create",
    "--role",
    "read",
    "--ttl",
    "720h",
    "--manager",
    address,
  ]);
  t.is(ttl.code, 5, ttl.stderr);
  const timeout = await inProcess(t, [
    "run",
    "img",
    "--wait",
    "--timeout",
    "600h",
    "--manager",
    address,
  ]);
  t.is(timeout.code, 2);
  t.regex(
    timeout.stderr,
    /argument '600h' is invalid\. "600h" is too long: at most 596h31m23s \(2147483647ms, about 24\.8 days/,
  );
});

test("a bad CUBE_* duration for `cube manager` or `cube worker`: named, exit 2, nothing started", async (t) => {
  const dir = await tempDir(t);
  const manager = await inProcess(t, ["manager", "--data-dir", join(dir, "m")], {
    env: { CUBE_SHUTDOWN_TIMEOUT: "soon" },
  });
  t.is(manager.code, 2, manager.stderr);
  t.regex(manager.stderr, /^cube: CUBE_SHUTDOWN_TIMEOUT: .*"soon"/);
  const worker = await inProcess(t, ["worker", "--data-dir", join(dir, "w")], {
    env: { CUBE_PULL_STALL_TIMEOUT: "soon" },
  });
  t.is(worker.code, 2, worker.stderr);
  t.regex(worker.stderr, /^cube: CUBE_PULL_STALL_TIMEOUT: .*"soon"/);
});
