/**
 * `cube` as the real executable (bin/cube.js, a process of its own) against a manager in the
 * test's process, with a scripted worker where tasks must run: the history `events --since`
 * replays, what `token revoke -o json` prints, the exit codes `stop` documents and returns,
 * and Ctrl-C (SIGINT to its process group) in the middle of `stop A B C --wait`.
 */
import { createClient } from "@connectrpc/connect";
import test from "ava";
import { DesiredState, TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { Role, TokenService } from "../gen/cube/v1/token_service_pb.js";
import { AssignmentAction } from "../gen/cube/v1/worker_service_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { cube, startCube } from "./cli-harness.js";
import { startTestManager } from "./fixtures.js";
import { eventually, FakeWorker, spec } from "./manager-harness.js";

/**
 * A manager without auth (the scripted worker has no join to go through) and a worker that
 * runs what it is given but never finishes a stop: a `stop --wait` waits until told otherwise.
 * One task a name, each RUNNING, or FAILED for the names in `failed`. The scripted worker
 * sends no heartbeat: a long timeout keeps it READY while a cube process starts (seconds),
 * else the manager would take it for DOWN and complete the stops itself.
 */
async function tasksOnAWorker(
  t: { teardown(fn: () => unknown): void },
  names: readonly string[],
  failed: readonly string[] = [],
) {
  const m = await startTestManager(t, { auth: false, heartbeatTimeoutMs: 600_000 });
  const tasks = createClient(TaskService, grpcTransport(m.address));
  const worker = new FakeWorker("w1", { auto: false });
  await worker.connect(grpcTransport(m.address));
  const ids: string[] = [];
  for (const name of names) {
    const { task } = await tasks.runTask({ spec: spec({ name }) });
    const id = task?.id as string;
    const run = await worker.waitFor((x) => x.action === AssignmentAction.RUN && x.task?.id === id);
    const state = failed.includes(name) ? TaskState.FAILED : TaskState.RUNNING;
    worker.update(id, run.task?.generation as bigint, state);
    ids.push(id);
  }
  await eventually(async () => {
    for (const [i, id] of ids.entries()) {
      const want = failed.includes(names[i] as string) ? TaskState.FAILED : TaskState.RUNNING;
      const { task } = await tasks.getTask({ id });
      if (task?.state !== want) throw new Error(`${id} not ${TaskState[want]} yet`);
    }
  });
  return { m, tasks, worker, ids };
}

/** The revision of each JSON TaskEvent line printed so far. */
function revisions(stdout: string): bigint[] {
  return stdout
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => BigInt((JSON.parse(line) as { revision: string }).revision));
}

test("events --since N replays the events after revision N, then follows; --since 0 replays all the manager keeps", async (t) => {
  const m = await startTestManager(t, { auth: false });
  const tasks = createClient(TaskService, grpcTransport(m.address));
  // No worker: each task is recorded (revision 1 on) and stays PENDING.
  for (const name of ["a", "b", "c"]) await tasks.runTask({ spec: spec({ name }) });
  const { revision: latest } = await tasks.listTasks({});
  t.true(latest >= 3n, `latest revision ${latest}`);

  for (const since of [0n, 1n]) {
    const events = startCube([
      "events",
      "--since",
      `${since}`,
      "-o",
      "json",
      "--manager",
      m.address,
    ]);
    t.teardown(() => events.kill());
    await events.waitFor(new RegExp(`"revision":"${latest}"`));
    // Live after the history, with no gap: a task run now is printed too.
    const { task } = await tasks.runTask({ spec: spec({ name: `d${since}` }) });
    await events.waitFor(new RegExp(`"id":"${task?.id}"`));
    const { revision: after } = await tasks.listTasks({});
    await events.waitFor(new RegExp(`"revision":"${after}"`));
    events.signal("SIGINT");
    const ended = await events.exited;
    t.is(ended.code, 0, ended.stderr);
    const want: bigint[] = [];
    for (let r = since + 1n; r <= after; r++) want.push(r);
    // Anything recorded after `after` may or may not have been printed before the SIGINT.
    t.deepEqual(
      revisions(ended.stdout).filter((r) => r <= after),
      want,
      `--since ${since}`,
    );
  }
});

test("token revoke -o json prints each token as revoked, one JSON object a line, as token ls shows it", async (t) => {
  const m = await startTestManager(t);
  const token = m.adminToken as string;
  const tokens = createClient(TokenService, grpcTransport(m.address, { token }));
  const ids: string[] = [];
  for (const name of ["one", "two"]) {
    const { token: made } = await tokens.createToken({ name, role: Role.READ });
    ids.push(made?.id as string);
  }
  const auth = ["--manager", m.address, "--token", token];

  const json = await cube(["token", "revoke", ...ids, "-o", "json", ...auth]);
  t.is(json.code, 0, json.stderr);
  const lines = json.stdout.split("\n").filter((line) => line !== "");
  t.is(lines.length, 2, json.stdout);
  const printed = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  t.deepEqual(
    printed.map((x) => [x.id, x.name, x.role, x.revoked]),
    [
      [ids[0], "one", "ROLE_READ", true],
      [ids[1], "two", "ROLE_READ", true],
    ],
  );
  const ls = await cube(["token", "ls", "-o", "json", ...auth]);
  t.is(ls.code, 0, ls.stderr);
  const listed = (JSON.parse(ls.stdout) as { tokens: Record<string, unknown>[] }).tokens;
  for (const x of printed)
    t.deepEqual(
      x,
      listed.find((y) => y.id === x.id),
    );

  // Without -o json, still the ids; revoking a revoked token again is not an error.
  const plain = await cube(["token", "revoke", ids[0] as string, ...auth]);
  t.is(plain.code, 0, plain.stderr);
  t.is(plain.stdout, `${ids[0]}\n`);
});

test("stop returns the exit codes its help lists, never 3: a FAILED task stops with 0, a stop not done by --timeout is 6, an unknown task 4", async (t) => {
  const { m, ids } = await tasksOnAWorker(t, ["broken", "hung"], ["broken"]);
  const [broken, hung] = ids as [string, string];
  const at = ["--manager", m.address];
  const [help, programHelp, failedTask, timedOut, unknown] = await Promise.all([
    cube(["stop", "--help"]),
    cube(["--help"]),
    cube(["stop", broken, "--wait", ...at]),
    cube(["stop", hung, "--wait", "--timeout", "1s", ...at]),
    cube(["stop", "nope", ...at]),
  ]);

  const listed = help.stdout.split("\n\n").find((part) => part.startsWith("Exit codes:")) ?? "";
  t.regex(listed, /^Exit codes: 0 all stopped .*, 4 no such task,/, help.stdout);
  t.regex(listed, /6 with --wait: a task not ended at --timeout, 130 interrupted/);
  t.notRegex(listed, /\b3\b/);
  t.regex(programHelp.stdout, /^ {4}3 {2}the task failed or was stopped \(run --wait\);/m);
  t.notRegex(programHelp.stdout, /stop --wait/);

  t.is(failedTask.code, 0, failedTask.stderr);
  t.is(failedTask.stdout, `${broken}\n`);
  t.regex(failedTask.stderr, /^ +[\d.]+s {2}FAILED\n$/);
  t.is(timedOut.code, 6, timedOut.stderr);
  t.regex(timedOut.stderr, new RegExp(`task ${hung} is not stopped after 1s: it is RUNNING`));
  t.is(unknown.code, 4, unknown.stderr);
});

test("Ctrl-C during stop A B C --wait: exit 130, A (still stopping), B and C named as not stopped, B and C never asked", async (t) => {
  const { m, tasks, worker, ids } = await tasksOnAWorker(t, ["a", "b", "c"]);
  const [a, b, c] = ids as [string, string, string];
  const stopping = startCube(["stop", a, b, c, "--wait", "--manager", m.address]);
  t.teardown(() => stopping.kill());
  // The first task's --wait is waiting (its worker never finishes the stop) when Ctrl-C comes.
  await Promise.race([
    worker.waitFor((x) => x.action === AssignmentAction.STOP && x.task?.id === a, 30_000),
    stopping.exited.then((r) => {
      throw new Error(`cube stop ended first, exit ${r.code}: ${r.stderr}`);
    }),
  ]);
  stopping.signal("SIGINT");
  const r = await stopping.exited;

  t.is(r.code, 130, r.stderr);
  t.is(r.stdout, "");
  t.regex(
    r.stderr,
    new RegExp(
      `\ncube: stopped waiting; task ${a} is still stopping \\(see \`cube ps\`\\); not stopped: ${a}, ${b}, ${c}\\n$`,
    ),
  );
  const desired = async (id: string) => (await tasks.getTask({ id })).task?.desiredState;
  t.is(await desired(a), DesiredState.STOPPED);
  for (const id of [b, c]) t.is(await desired(id), DesiredState.RUNNING, `${id} was asked to stop`);
  t.false(
    worker.assignments.some(
      (x) => x.action === AssignmentAction.STOP && [b, c].includes(x.task?.id as string),
    ),
  );
});
