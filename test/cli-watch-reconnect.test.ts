/**
 * The CLI's long-lived watches (`cube events`, `ps --watch`, `nodes --watch`) through a restart
 * of the manager, as real processes: a manager (manager/main.ts) stopped with SIGTERM or
 * killed with SIGKILL and started again on the same data and the same address, and the real
 * `cube` executable following it. They say once that the manager was lost and once that it is
 * back (on stderr), and carry on: events resume after the last one printed, with nothing
 * missed or printed twice; lists are read again; `logs -f` reads on from the last line it
 * printed (TaskLogs with `since`), through a restart of the task's worker too. What a restart
 * does not explain (a token the manager no longer knows, a history it no longer has, a task
 * started again in another container) still ends them, with its error.
 * Serial: each test starts managers, a worker or two and several CLIs, and the machine may
 * have two cores for every test file running at once.
 */
import type { ChildProcess } from "node:child_process";
import { copyFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import { JobService } from "../gen/cube/v1/job_service_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { type RunningCube, startCube } from "./cli-harness.js";
import { requireDocker, tempDir } from "./fixtures.js";
import { spec } from "./manager-harness.js";
import { Cluster, type Spawned, spawnCube } from "./manager-process.js";

/** Generous: two cores, test files in parallel, and each restart starts a process. */
const LONG = 60_000;

const LOST = (address: string) => `lost the manager at ${address}, reconnecting…\n`;
const BACK = (address: string) => `reconnected to the manager at ${address}\n`;

/** Resolves once `child` has exited. */
function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** Stops the manager as an upgrade does: SIGTERM, and waits until it is gone. */
async function stopManager(m: Spawned, how: "SIGTERM" | "SIGKILL"): Promise<void> {
  if (how === "SIGKILL") return m.kill9();
  m.child.kill("SIGTERM");
  await exited(m.child);
}

/** A TaskService client of `m`, with its admin token. */
function tasksOf(m: Spawned) {
  return createClient(TaskService, grpcTransport(m.address, { token: m.token }));
}

/** The JSON objects printed one a line so far. */
function jsonLines<T>(stdout: string): T[] {
  return stdout
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as T);
}

/** How many times `text` occurs in `within`. */
function count(within: string, text: string): number {
  return within.split(text).length - 1;
}

/** Starts `cube args… --manager ADDR --token TOKEN`, killed at teardown. */
function follow(t: { teardown(fn: () => unknown): void }, m: Spawned, args: string[]): RunningCube {
  const cli = startCube([...args, "--manager", m.address, "--token", m.token ?? ""]);
  t.teardown(() => cli.kill(1000));
  return cli;
}

/**
 * Stops `first` (`how`), waits until each of `clis` has said it lost it, and starts another
 * manager at the same address on other data (`dir`/`sub`: its own tokens and CA).
 */
async function otherManager(
  t: { teardown(fn: () => unknown): void },
  first: Spawned,
  how: "SIGTERM" | "SIGKILL",
  clis: readonly RunningCube[],
  dataDir: string,
  env: Record<string, string> = {},
): Promise<Spawned> {
  await stopManager(first, how);
  for (const cli of clis) await cli.waitFor(/lost the manager at/, LONG, "stderr");
  return spawnCube(t, "manager/main.ts", {
    CUBE_DATA_DIR: dataDir,
    CUBE_LISTEN: first.address,
    CUBE_LOG_LEVEL: "warn",
    ...env,
  });
}

interface EventLine {
  revision: string;
  task?: { id?: string };
}

/**
 * Runs tasks until `cube events -o json` prints one (it prints nothing before, and starts
 * from the revision it reads when it has connected): then it follows. Returns the revision
 * of the first event it printed.
 */
async function primed(events: RunningCube, tasks: ReturnType<typeof tasksOf>): Promise<bigint> {
  const deadline = Date.now() + LONG;
  for (let i = 0; ; i++) {
    await tasks.runTask({ spec: spec({ name: `primer-${i}` }) });
    try {
      await events.waitFor(/"revision":"(\d+)"/, 500);
      break;
    } catch (error) {
      if (Date.now() > deadline || events.child.exitCode !== null) throw error;
    }
  }
  return BigInt((jsonLines<EventLine>(events.stdout())[0] as EventLine).revision);
}

for (const how of ["SIGTERM", "SIGKILL"] as const) {
  test.serial(
    `events -o json follows a manager restarted after ${how}: every event once, in order, across the restart`,
    async (t) => {
      const cluster = new Cluster(t, await tempDir(t));
      const first = await cluster.startManager();
      const events = follow(t, first, ["events", "-o", "json"]);
      // No worker: each task is recorded and stays PENDING.
      const start = await primed(events, tasksOf(first));
      const { task: before } = await tasksOf(first).runTask({ spec: spec({ name: "before" }) });
      await events.waitFor(new RegExp(`"id":"${before?.id}"`), LONG);

      await stopManager(first, how);
      await events.waitFor(/lost the manager at/, LONG, "stderr");
      const second = await cluster.startManager();
      t.is(second.address, first.address);
      const again = tasksOf(second);
      // Run at once, most likely before the CLI is back: the resume must not miss it.
      const { task: during } = await again.runTask({ spec: spec({ name: "during" }) });
      await events.waitFor(/reconnected to the manager at/, LONG, "stderr");
      const { task: after } = await again.runTask({ spec: spec({ name: "after" }) });
      await events.waitFor(new RegExp(`"id":"${during?.id}"`), LONG);
      await events.waitFor(new RegExp(`"id":"${after?.id}"`), LONG);
      const { revision: latest } = await again.listTasks({});
      await events.waitFor(new RegExp(`"revision":"${latest}"`), LONG);

      events.signal("SIGINT");
      const ended = await events.exited;
      t.is(ended.code, 0, ended.stderr);
      // Every revision from the first printed, once each and in order (one event a revision):
      // none missed while the manager was away, none printed again after it came back.
      const printed = jsonLines<EventLine>(ended.stdout)
        .map((e) => BigInt(e.revision))
        .filter((r) => r <= latest);
      const want: bigint[] = [];
      for (let r = start; r <= latest; r++) want.push(r);
      t.deepEqual(printed, want);
      t.is(count(ended.stderr, LOST(first.address)), 1, ended.stderr);
      t.is(count(ended.stderr, BACK(first.address)), 1, ended.stderr);
      t.notRegex(ended.stderr, /TLS|--ca/);
    },
  );
}

test.serial(
  "ps --watch -o json lists again after a restart: what changed while away is printed once, what did not is not, and new tasks follow",
  async (t) => {
    const cluster = new Cluster(t, await tempDir(t));
    const first = await cluster.startManager();
    const tasks = tasksOf(first);
    const { task: a } = await tasks.runTask({ spec: spec({ name: "a" }) });
    const ps = follow(t, first, ["ps", "--watch", "-o", "json"]);
    await ps.waitFor(new RegExp(`"id":"${a?.id}"`), LONG);
    // b comes through the watch: it is open.
    const { task: b } = await tasks.runTask({ spec: spec({ name: "b" }) });
    await ps.waitFor(new RegExp(`"id":"${b?.id}"`), LONG);
    const shownBefore = ps.stdout().length;

    // The CLI is frozen while the manager dies, comes back and changes: the stream carries none
    // of it, only the list read after the reconnect can.
    ps.signal("SIGSTOP");
    try {
      await stopManager(first, "SIGKILL");
      const second = await cluster.startManager();
      const again = tasksOf(second);
      await again.stopTask({ id: a?.id as string });
      const { task: c } = await again.runTask({ spec: spec({ name: "c" }) });
      ps.signal("SIGCONT");
      await ps.waitFor(/reconnected to the manager at/, LONG, "stderr");
      await ps.waitFor(new RegExp(`"id":"${c?.id}"`), LONG);
      // And the watch goes on from the list.
      const { task: d } = await again.runTask({ spec: spec({ name: "d" }) });
      await ps.waitFor(new RegExp(`"id":"${d?.id}"`), LONG);
      const { task: aNow } = await again.getTask({ id: a?.id as string });

      ps.signal("SIGINT");
      const ended = await ps.exited;
      t.is(ended.code, 0, ended.stderr);
      const later = jsonLines<{ id: string; revision: string; desiredState: string }>(
        ended.stdout.slice(shownBefore),
      );
      // a once, as the list read after the reconnect has it (the stream missed its changes).
      const ofA = later.filter((x) => x.id === a?.id);
      t.is(ofA.length, 1, ended.stdout);
      t.is(ofA[0]?.revision, `${aNow?.revision}`);
      t.is(ofA[0]?.desiredState, "DESIRED_STATE_STOPPED");
      t.deepEqual(
        later.filter((x) => x.id === b?.id),
        [],
        "b did not change: not printed again",
      );
      t.is(later.filter((x) => x.id === c?.id).length, 1);
      t.is(count(ended.stderr, LOST(first.address)), 1, ended.stderr);
      t.is(count(ended.stderr, BACK(first.address)), 1, ended.stderr);
    } finally {
      ps.signal("SIGCONT");
    }
  },
);

test.serial(
  "nodes --watch -o json carries on after a restart: the worker, back with the manager, is shown again",
  async (t) => {
    await requireDocker();
    const cluster = new Cluster(t, await tempDir(t));
    const first = await cluster.startManager();
    const worker = await cluster.startWorker("w1");
    const nodes = follow(t, first, ["nodes", "--watch", "-o", "json"]);
    await nodes.waitFor(new RegExp(`"id":"${worker.id}"`), LONG);

    await stopManager(first, "SIGTERM");
    await nodes.waitFor(/lost the manager at/, LONG, "stderr");
    const shownBefore = nodes.stdout().length;
    await cluster.startManager();
    await nodes.waitFor(/reconnected to the manager at/, LONG, "stderr");
    // The worker dials the new manager by itself; the watch shows it READY there.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no READY line after the restart:\n${nodes.stdout()}`)),
        LONG,
      );
      const check = setInterval(() => {
        const ready = jsonLines<{ id: string; status: string }>(
          nodes.stdout().slice(shownBefore),
        ).some((w) => w.id === worker.id && w.status === "WORKER_STATUS_READY");
        if (ready) {
          clearTimeout(timer);
          clearInterval(check);
          resolve();
        }
      }, 100);
    });
    nodes.signal("SIGINT");
    const ended = await nodes.exited;
    t.is(ended.code, 0, ended.stderr);
    t.is(count(ended.stderr, LOST(first.address)), 1, ended.stderr);
    t.is(count(ended.stderr, BACK(first.address)), 1, ended.stderr);
  },
);

test.serial(
  "job ls --watch and job status --watch carry on after a restart; status prints no line for a job that did not change meanwhile",
  async (t) => {
    const cluster = new Cluster(t, await tempDir(t));
    const first = await cluster.startManager();
    const jobsOf = (m: Spawned) =>
      createClient(JobService, grpcTransport(m.address, { token: m.token }));
    await jobsOf(first).applyJob({ spec: { name: "web", template: spec(), count: 0 } });
    const ls = follow(t, first, ["job", "ls", "--watch", "-o", "json"]);
    const status = follow(t, first, ["job", "status", "web", "--watch"]);
    await ls.waitFor(/"name":"web"/, LONG);
    await status.waitFor(/^web {2}v1 /m, LONG);

    await stopManager(first, "SIGTERM");
    const second = await cluster.startManager();
    await ls.waitFor(/reconnected to the manager at/, LONG, "stderr");
    await status.waitFor(/reconnected to the manager at/, LONG, "stderr");
    await jobsOf(second).scaleJob({ name: "web", count: 2 });
    await ls.waitFor(/"count":2/, LONG);
    await status.waitFor(/0\/2 healthy/, LONG);
    for (const cli of [ls, status]) cli.signal("SIGINT");
    const [lsEnded, statusEnded] = await Promise.all([ls.exited, status.exited]);
    t.is(lsEnded.code, 0, lsEnded.stderr);
    t.is(statusEnded.code, 0, statusEnded.stderr);
    // The job as it was before the restart, sent again by the new watch, was not printed again.
    const lines = statusEnded.stdout.split("\n").filter((x) => x !== "");
    t.true(
      lines.every((line, i) => line !== lines[i - 1]),
      statusEnded.stdout,
    );
    for (const ended of [lsEnded, statusEnded]) {
      t.is(count(ended.stderr, LOST(first.address)), 1, ended.stderr);
      t.is(count(ended.stderr, BACK(first.address)), 1, ended.stderr);
    }
  },
);

test.serial(
  "a manager that comes back without the CLI's token ends the watch with exit 7, and one that never knew it at once",
  async (t) => {
    const dir = await tempDir(t);
    const cluster = new Cluster(t, dir);
    const first = await cluster.startManager();
    const events = follow(t, first, ["events", "-o", "json"]);
    const ps = follow(t, first, ["ps", "--watch"]);
    await primed(events, tasksOf(first));
    await ps.waitFor(/^ID\s+NAME/m, LONG);
    // Another manager, with other data (its own tokens), at the same address.
    await otherManager(t, first, "SIGTERM", [events, ps], `${dir}/other`);
    for (const cli of [events, ps]) {
      const ended = await cli.exited;
      t.is(ended.code, 7, ended.stderr);
      t.regex(ended.stderr, /cube: the manager at \S+ refused the call: /);
      t.is(count(ended.stderr, LOST(first.address)), 1, ended.stderr);
      t.notRegex(ended.stderr, /reconnected|TLS|--ca/);
    }
    // A token it never knew: exit 7 at once, no retrying.
    const wrong = startCube([
      "events",
      "--manager",
      first.address,
      "--token",
      "cube_nope_0000000000000000",
    ]);
    t.teardown(() => wrong.kill(1000));
    const ended = await wrong.exited;
    t.is(ended.code, 7, ended.stderr);
    t.notRegex(ended.stderr, /lost the manager/);
  },
);

test.serial(
  "a manager that comes back with another CA ends the watch with the TLS error (exit 5), not a silent retry for good",
  async (t) => {
    const dir = await tempDir(t);
    const cluster = new Cluster(t, dir, { CUBE_TLS: "1" });
    const first = await cluster.startManager();
    const ca = join(dir, "ca.crt");
    await copyFile(join(dir, "manager", "tls", "ca.crt"), ca);
    const events = follow(t, first, ["events", "-o", "json", "--ca", ca]);
    const tls = createClient(
      TaskService,
      grpcTransport(first.address, {
        token: first.token,
        tls: { ca: await readFile(ca, "utf8") },
      }),
    );
    await primed(events, tls);
    // Another manager at the same address, on other data: its own CA.
    await otherManager(t, first, "SIGKILL", [events], `${dir}/other`, { CUBE_TLS: "1" });
    const ended = await events.exited;
    t.is(ended.code, 5, ended.stderr);
    t.regex(ended.stderr, /cube: cannot talk TLS to the manager at \S+: .*--ca/);
    t.is(count(ended.stderr, LOST(first.address)), 1, ended.stderr);
    t.notRegex(ended.stderr, /reconnected/);
  },
);

test.serial(
  "events refuses to resume past a history the manager no longer has: it says events may be missed and exits 1, never skipping them silently",
  async (t) => {
    const dir = await tempDir(t);
    // Without tokens, so that a manager on other data still answers the CLI.
    const cluster = new Cluster(t, dir, { CUBE_AUTH: "0" });
    const first = await cluster.startManager();
    const tasks = createClient(TaskService, grpcTransport(first.address));
    const events = startCube(["events", "-o", "json", "--manager", first.address]);
    t.teardown(() => events.kill(1000));
    await primed(events, tasks);
    const { task } = await tasks.runTask({ spec: spec({ name: "x" }) });
    await events.waitFor(new RegExp(`"id":"${task?.id}"`), LONG);
    const { revision: latest } = await tasks.listTasks({});
    await events.waitFor(new RegExp(`"revision":"${latest}"`), LONG);
    const printed = `${latest}`;
    await otherManager(t, first, "SIGKILL", [events], `${dir}/empty`, { CUBE_AUTH: "0" });
    const ended = await events.exited;
    t.is(ended.code, 1, ended.stderr);
    t.regex(
      ended.stderr,
      new RegExp(
        `cube: the manager at ${first.address} cannot carry on after revision ${printed} \\(the last event printed\\): .*ahead of the latest revision 0\\. Events in between may be missed`,
      ),
    );
  },
);

test.serial(
  "Ctrl-C while the manager is away ends a watch at once, as it always did",
  async (t) => {
    const cluster = new Cluster(t, await tempDir(t));
    const first = await cluster.startManager();
    const events = follow(t, first, ["events", "-o", "json"]);
    const nodes = follow(t, first, ["nodes", "--watch"]);
    await primed(events, tasksOf(first));
    await nodes.waitFor(/^NAME\s+ID/m, LONG);
    await stopManager(first, "SIGKILL");
    await events.waitFor(/lost the manager at/, LONG, "stderr");
    await nodes.waitFor(/lost the manager at/, LONG, "stderr");
    const started = Date.now();
    events.signal("SIGINT");
    nodes.signal("SIGINT");
    const [e, n] = await Promise.all([events.exited, nodes.exited]);
    t.true(Date.now() - started < 10_000, `${Date.now() - started} ms`);
    t.is(e.code, 0, e.stderr);
    t.is(n.code, 0, n.stderr);
  },
);

/** Prints "line 0", "line 1"… every 100 ms, for good. */
const COUNTER = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done";

/**
 * The counter task on a cluster of a manager and worker w1, and `cube logs -f` following it
 * from its first line (until the container runs, the call answers "no container yet": the
 * command is started again).
 */
async function followedCounter(t: ExecutionContext) {
  await requireDocker();
  const cluster = new Cluster(t, await tempDir(t));
  const m = await cluster.startManager();
  await cluster.startWorker("w1");
  const { task } = await tasksOf(m).runTask({
    spec: spec({ name: "counter", command: ["sh", "-c", COUNTER] }),
  });
  const id = task?.id as string;
  let logs = follow(t, m, ["logs", "-f", id]);
  for (const deadline = Date.now() + LONG; ; ) {
    try {
      await logs.waitFor(/^line 0$/m, 2000);
      break;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      if (logs.child.exitCode !== null) logs = follow(t, m, ["logs", "-f", id]);
    }
  }
  return { cluster, m, id, logs };
}

/** The numbered lines printed so far; the highest number. */
function counted(stdout: string): number {
  const lines = stdout.split("\n").filter((l) => l !== "");
  return lines.length === 0 ? -1 : Number(/^line (\d+)$/.exec(lines.at(-1) as string)?.[1]);
}

/** Waits until the counter printed line `n`. */
async function untilLine(logs: RunningCube, n: number): Promise<void> {
  await logs.waitFor(new RegExp(`^line ${n}$`, "m"), LONG);
}

/** What -f printed was the counter's lines, each once, in order, from line 0: nothing missed. */
function everyLineOnce(t: { deepEqual(a: unknown, b: unknown, m?: string): void }, out: string) {
  const lines = out.split("\n").filter((l) => l !== "");
  t.deepEqual(
    lines,
    lines.map((_, i) => `line ${i}`),
    "the counter's lines, each once, none missed",
  );
}

test.serial(
  "logs -f carries on through a manager killed and restarted on its address: every line once, in order, none missed while it was away; one line lost, one back",
  async (t) => {
    const { cluster, m, id, logs } = await followedCounter(t);
    await untilLine(logs, 10);
    await m.kill9();
    await logs.waitFor(/lost the manager at/, LONG, "stderr");
    const before = counted(logs.stdout());
    // The container writes on while the manager is away: those lines come after the return.
    await new Promise((r) => setTimeout(r, 1500));
    const again = await cluster.startManager();
    t.is(again.address, m.address);
    await logs.waitFor(/reconnected to the manager at/, LONG, "stderr");
    await untilLine(logs, before + 30);
    logs.signal("SIGINT");
    const ended = await logs.exited;
    t.is(ended.code, 0, ended.stderr);
    everyLineOnce(t, ended.stdout);
    t.is(count(ended.stderr, LOST(m.address)), 1, ended.stderr);
    t.is(count(ended.stderr, BACK(m.address)), 1, ended.stderr);
    t.is(ended.stderr, `${LOST(m.address)}${BACK(m.address)}`, "nothing else on stderr");
    t.notRegex(ended.stderr, /TLS|--ca/);
    t.true(counted(ended.stdout) > before + 15, `task ${id}`);
  },
);

for (const signal of ["SIGTERM", "SIGKILL"] as const) {
  test.serial(
    `logs -f carries on through a restart of the task's worker (${signal}, then started again on its data): it says the logs cannot be read for now, then reads on, every line once`,
    async (t) => {
      const { cluster, id, logs } = await followedCounter(t);
      await untilLine(logs, 10);
      const worker = cluster.workers.get("w1") as Spawned;
      worker.child.kill(signal);
      await exited(worker.child);
      await logs.waitFor(
        new RegExp(
          `cannot read the logs of task ${id} for now: worker w1 \\(\\S+\\) at \\S+ is (unreachable|DOWN)`,
        ),
        LONG,
        "stderr",
      );
      const before = counted(logs.stdout());
      await new Promise((r) => setTimeout(r, 1000));
      // Same data directory, same id; a new port, which it registers with the manager.
      await cluster.startWorker("w1");
      await logs.waitFor(new RegExp(`reading the logs of task ${id} again`), LONG, "stderr");
      await untilLine(logs, before + 25);
      logs.signal("SIGINT");
      const ended = await logs.exited;
      t.is(ended.code, 0, ended.stderr);
      everyLineOnce(t, ended.stdout);
      t.is(count(ended.stderr, "cannot read the logs"), 1, ended.stderr);
      t.is(count(ended.stderr, "reading the logs"), 1, ended.stderr);
      t.notRegex(ended.stderr, /lost the manager/);
    },
  );
}

test.serial(
  "logs -f of a task started again in a new container while the manager was away ends, exit 1, saying so: never the new container's lines as if they were the old one's",
  async (t) => {
    const { cluster, m, id, logs } = await followedCounter(t);
    await untilLine(logs, 5);
    // Frozen while the manager dies, comes back and the task is stopped and run again elsewhere.
    logs.signal("SIGSTOP");
    try {
      await m.kill9();
      const again = await cluster.startManager();
      const tasks = tasksOf(again);
      const { task } = await tasks.getTask({ id });
      // A second container of the same task: the worker is lost for good (kill -9, no return),
      // so the manager moves the task, to w2.
      await cluster.startWorker("w2");
      await (cluster.workers.get("w1") as Spawned).kill9();
      for (const deadline = Date.now() + LONG; ; ) {
        const { task: now } = await tasks.getTask({ id });
        if (now?.containerId && now.containerId !== task?.containerId) break;
        if (Date.now() > deadline) throw new Error("the task was not moved");
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      logs.signal("SIGCONT");
    }
    const ended = await logs.exited;
    t.is(ended.code, 1, ended.stderr);
    t.regex(
      ended.stderr,
      new RegExp(
        `cube: task ${id} was started again \\(generation \\d+, in a new container\\) while its logs could not be read: .* \`cube logs -f ${id}\` follows the new one\n$`,
      ),
    );
    everyLineOnce(t, ended.stdout);
  },
);
