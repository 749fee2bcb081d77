/**
 * `cube` commands run in this process (runCli, as bin/cube.js does) against a real manager on
 * 127.0.0.1:0: a watch of a job that does not exist, and addresses and durations refused
 * before anything is dialled; watches cut off for reading too slowly carry on. Ctrl-C in the middle of `cube stop A B C --wait` is in
 * cli-process.test.ts, with a real SIGINT to a real process.
 */
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import test from "ava";
import { runCli } from "../cli/run-cli.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
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

test("a bad CUBE_WARM_SANDBOXES for `cube dev` or `cube worker`: named, exit 2, nothing started", async (t) => {
  const dir = await tempDir(t);
  for (const args of [
    ["dev", "--data-dir", join(dir, "d")],
    ["worker", "--data-dir", join(dir, "w")],
  ]) {
    const run = await inProcess(t, args, { env: { CUBE_WARM_SANDBOXES: "lots" } });
    t.is(run.code, 2, run.stderr);
    t.regex(run.stderr, /^cube: CUBE_WARM_SANDBOXES: "lots" is not a whole number in 0–64/);
  }
});

test("a watch cut off for falling behind (a burst larger than its buffer) carries on from the last event read: every event once, in order", async (t) => {
  // A buffer of 20 events: one RunTasks of 300 overflows it at once, whatever the reader.
  const m = await startTestManager(t, { watchBufferSize: 20 });
  const client = createClient(TaskService, grpcTransport(m.address, { token: m.adminToken }));
  const auth = ["--manager", m.address, "--token", m.adminToken as string];
  const interrupt = new AbortController();
  t.teardown(() => interrupt.abort());
  const io = {
    ...captureIo({ CUBE_CONFIG: join(await tempDir(t), "c.json") }),
    interrupted: interrupt.signal,
  };
  const ran = runCli(["events", "-o", "json", ...auth], io);
  const created = () =>
    io
      .out()
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as { revision: string; task: { id: string }; type: string });
  const until = async (what: string, ok: () => boolean) => {
    const deadline = Date.now() + 15_000;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`${what}: not within 15 s; stderr: ${io.err()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  // The watch is open once it prints a task's event (one run before it opened is not shown).
  let warm = 0;
  await until("the watch is open", () => {
    if (created().length > 0) return true;
    void client.runTask({ id: `warm${warm++}`, spec: { image: "img" } });
    return false;
  });
  await client.runTasks({
    requests: Array.from({ length: 300 }, (_, i) => ({ id: `t${i}`, spec: { image: "img" } })),
  });
  const burst = (ids: Set<string>) =>
    Array.from({ length: 300 }, (_, i) => `t${i}`).every((id) => ids.has(id));
  await until("all 300 printed", () => burst(new Set(created().map((e) => e.task.id))));
  interrupt.abort();
  await ran;
  const revisions = created().map((e) => BigInt(e.revision));
  t.true(
    revisions.every((r, i) => i === 0 || r > (revisions[i - 1] as bigint)),
    "in order, none twice",
  );
  t.regex(io.err(), /the watch fell behind the manager's events and was cut off; carrying on/);
  t.notRegex(io.err(), /lost the manager/);
});
