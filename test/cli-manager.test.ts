/**
 * `cube` commands run in this process (runCli, as bin/cube.js does) against a real manager on
 * 127.0.0.1:0, with a scripted worker where a command needs tasks that run: a watch of a job
 * that does not exist, Ctrl-C in the middle of `cube stop A B C --wait`, and addresses and
 * durations refused before anything is dialled.
 */
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import test from "ava";
import { runCli } from "../cli/run-cli.js";
import { DesiredState, TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { AssignmentAction } from "../gen/cube/v1/worker_service_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { captureIo, freePort } from "./cli-harness.js";
import { startTestManager, tempDir } from "./fixtures.js";
import { eventually, FakeWorker, spec } from "./manager-harness.js";

/** What a command run in process left. */
interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `cube args…` in this process with a config file of its own (none: the developer's is
 * never read). `interrupt` stands for Ctrl-C; it also fires after `deadlineMs`, so that a
 * command that would never end fails the test instead of hanging it.
 */
async function inProcess(
  t: { teardown(fn: () => unknown): void },
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; interrupt?: AbortController; deadlineMs?: number } = {},
): Promise<Ran> {
  const interrupt = options.interrupt ?? new AbortController();
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

test("Ctrl-C during stop A B C --wait ends the command: B and C are not stopped", async (t) => {
  // Without auth: the scripted worker has no join to go through.
  const m = await startTestManager(t, { auth: false });
  const tasks = createClient(TaskService, grpcTransport(m.address));
  // A worker that runs what it is given but never finishes a stop: the --wait of the first
  // task is still waiting when Ctrl-C comes.
  const worker = new FakeWorker("w1", { auto: false });
  await worker.connect(grpcTransport(m.address));
  const ids: string[] = [];
  for (const name of ["a", "b", "c"]) {
    const { task } = await tasks.runTask({ spec: spec({ name }) });
    const id = task?.id as string;
    const run = await worker.waitFor((x) => x.action === AssignmentAction.RUN && x.task?.id === id);
    worker.update(id, run.task?.generation as bigint, TaskState.RUNNING);
    ids.push(id);
  }
  await eventually(async () => {
    for (const id of ids) {
      const { task } = await tasks.getTask({ id });
      if (task?.state !== TaskState.RUNNING) throw new Error(`${id} not RUNNING yet`);
    }
  });

  const interrupt = new AbortController();
  const stopping = inProcess(t, ["stop", ...ids, "--wait", "--manager", m.address], { interrupt });
  await worker.waitFor((x) => x.action === AssignmentAction.STOP && x.task?.id === ids[0]);
  interrupt.abort();
  const r = await stopping;

  t.is(r.code, 130, r.stderr);
  t.regex(r.stderr, new RegExp(`not stopped: ${ids[1]}, ${ids[2]}\\n$`));
  for (const id of ids.slice(1)) {
    const { task } = await tasks.getTask({ id });
    t.is(task?.desiredState, DesiredState.RUNNING, `${id} was asked to stop`);
  }
  t.false(
    worker.assignments.some(
      (x) => x.action === AssignmentAction.STOP && ids.slice(1).includes(x.task?.id as string),
    ),
  );
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
