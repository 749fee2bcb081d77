/**
 * End to end over separate processes: `cube manager`, two `cube worker`s and the CLI,
 * all started through bin/cube.js, with real containers. Every command is checked as a
 * person or a script would use it: tables, -o json parsed here, exit codes, stderr.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { cube, type RunningCube, startCube } from "./cli-harness.js";
import { docker, fetchContainer, HTTP_IMAGE, removeContainers, requireDocker } from "./fixtures.js";
import { stallingRegistry } from "./stalling-registry.js";

interface Cluster {
  manager: string;
  workers: { id: string; name: string }[];
  dir: string;
  processes: RunningCube[];
}

let cluster: Cluster | undefined;

test.before(async () => {
  await requireDocker();
  const dir = await mkdtemp(join(tmpdir(), "cube-e2e-cli-"));
  const processes: RunningCube[] = [];
  cluster = { manager: "", workers: [], dir, processes };
  // The timing flags spelled out with their defaults, so the flags themselves are exercised.
  const manager = startCube([
    "manager",
    "--listen",
    "127.0.0.1:0",
    "--data-dir",
    join(dir, "m"),
    "--scheduler",
    "fit",
    "--heartbeat-interval",
    "500ms",
    "--heartbeat-timeout",
    "2s",
    "--down-grace",
    "1s",
    "--startup-grace",
    "6s",
    "--assignment-window",
    "8",
    // Past the 24.8 days a timer can wait: an age, which the sweep compares, may be longer.
    "--task-gc-after",
    "720h",
    "--node-gc-after",
    "720h",
  ]);
  processes.push(manager);
  const [, address] = await manager.waitFor(/manager listening on (\S+)/);
  cluster.manager = address as string;
  // The join token it prints for workers; clients read the admin token from the config file.
  const [, joinToken] = await manager.waitFor(/--token (\S+)/);
  const workers = ["e2e-w1", "e2e-w2"].map((name) => {
    const w = startCube([
      "worker",
      "--manager",
      cluster?.manager as string,
      "--listen",
      "127.0.0.1:0",
      "--name",
      name,
      "--data-dir",
      join(dir, name),
      "--label",
      `e2e=${name}`,
      "--token",
      joinToken as string,
      // Shorter than the default minute, so a stalled pull fails within the test.
      "--pull-stall-timeout",
      "2s",
    ]);
    processes.push(w);
    return { name, w };
  });
  for (const { name, w } of workers) {
    const [, id] = await w.waitFor(/worker (\S+) listening on/);
    cluster.workers.push({ id: id as string, name });
  }
});

test.after.always(async () => {
  if (!cluster) return;
  await Promise.all(cluster.processes.map((p) => p.kill()));
  for (const w of cluster.workers) await removeContainers(`cube.worker=${w.id}`);
  await rm(cluster.dir, { recursive: true, force: true });
});

/** `cube COMMAND --manager <the test's manager> ARGS…` (before any "--"). */
function c(command: string, ...args: string[]) {
  return cube([command, "--manager", (cluster as Cluster).manager, ...args]);
}

/** Retries `fn` until it returns something, for what the cluster does on its own time. */
async function eventually<T>(fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 300));
  }
}

// biome-ignore lint/suspicious/noExplicitAny: JSON from the CLI, checked field by field
type Json = any;

test.serial("nodes: both workers READY, as a table and as JSON", async (t) => {
  const workers: Json[] = await eventually(async () => {
    const r = await c("nodes", "-o", "json");
    t.is(r.code, 0, r.stderr);
    const list = JSON.parse(r.stdout).workers ?? [];
    const ready = list.filter((w: Json) => w.status === "WORKER_STATUS_READY");
    return ready.length === 2 ? list : undefined;
  });
  t.deepEqual(workers.map((w) => w.name).sort(), ["e2e-w1", "e2e-w2"]);
  t.deepEqual(
    workers.map((w) => w.id).sort(),
    (cluster as Cluster).workers.map((w) => w.id).sort(),
  );
  t.deepEqual(workers.find((w) => w.name === "e2e-w1").labels, { e2e: "e2e-w1" });
  const table = await c("nodes");
  t.is(table.code, 0);
  const lines = table.stdout.trimEnd().split("\n");
  t.regex(
    lines[0] as string,
    /^NAME\s+ID\s+STATUS\s+CPU\s+MEMORY\s+DISK\s+TASKS\s+AGENT UP\s+LAST SEEN$/,
  );
  t.is(lines.length, 3);
  // AGENT UP: the agents started with the cluster, seconds or minutes ago.
  for (const line of lines.slice(1)) {
    t.regex(line, /^e2e-w\d\s+\S+\s+READY\s.*\s\d+(s|m\d*s?)\s+\S+ ago$/);
  }
  t.false(table.stdout.includes("\u001b["), "no colours when piped");
});

test.serial(
  "run --wait, ps, inspect, curl, stop: a healthy web task, start to finish",
  async (t) => {
    const events = startCube(["events", "-o", "json", "--manager", (cluster as Cluster).manager]);
    t.teardown(() => events.kill());
    // Let the watch open before the task exists, so its first events are seen live.
    await new Promise((r) => setTimeout(r, 1000));

    const run = await c(
      "run",
      HTTP_IMAGE,
      "--name",
      "e2e-web",
      "--port",
      "80",
      "--health-path",
      "/health",
      "--label",
      "suite=e2e-cli",
      "--memory",
      "64Mi",
      "--wait",
    );
    t.is(run.code, 0, run.stderr);
    const id = run.stdout.trim();
    t.regex(id, /^\S+$/, "stdout is just the id");
    t.regex(run.stderr, /RUNNING/);
    t.regex(run.stderr, /HEALTHY/);
    t.regex(run.stderr, /is RUNNING and healthy after/);
    // Elapsed times lead each progress line.
    t.regex(run.stderr, /^\s+\d+\.\ds {2}(PENDING|SCHEDULED)/m);

    // Four views of the same running task, read side by side.
    const [ps, table, inspect, yaml] = await Promise.all([
      c("ps", "-o", "json", "--label", "suite=e2e-cli"),
      c("ps", "--name", "e2e-web"),
      // By unique prefix, as a person would type it.
      c("inspect", id.slice(0, 8), "-o", "json"),
      c("inspect", "e2e-web"),
    ]);
    t.is(ps.code, 0, ps.stderr);
    const psJson = JSON.parse(ps.stdout);
    const task: Json = psJson.tasks.find((x: Json) => x.id === id);
    t.truthy(task, "ps -o json lists the task");
    t.is(task.state, "TASK_STATE_RUNNING");
    t.is(task.health, "HEALTH_STATUS_HEALTHY");
    t.is(task.spec.resources.memoryBytes, "67108864", "uint64 as a string, per the JSON mapping");
    const worker = (cluster as Cluster).workers.find((w) => w.id === task.workerId);
    t.truthy(worker, "placed on one of our workers");
    const hostPort = task.ports[0].hostPort as number;
    t.true(hostPort > 0);
    const answer = await fetchContainer(`http://127.0.0.1:${hostPort}/health`);
    t.is(answer.status, 200);

    t.is(table.code, 0);
    const [head, row] = table.stdout.trimEnd().split("\n");
    t.regex(head as string, /^ID\s+NAME\s+STATE\s+WORKER\s+IMAGE\s+PORTS\s+RESTARTS\s+AGE$/);
    t.regex(
      row as string,
      new RegExp(
        `^${id.slice(0, 12)}\\s+e2e-web\\s+RUNNING \\(healthy\\)\\s+${worker?.name}\\s+cube/httpd:local\\s+127\\.0\\.0\\.1:${hostPort}->80/tcp\\s+0\\s+\\d+s$`,
      ),
    );

    t.is(inspect.code, 0, inspect.stderr);
    const detail = JSON.parse(inspect.stdout);
    t.is(detail.task.id, id);
    t.is(detail.task.containerId.length > 0, true);
    const types = detail.events.map((e: Json) => e.type);
    t.is(types[0], "TASK_EVENT_TYPE_CREATED");
    t.true(types.includes("TASK_EVENT_TYPE_HEALTH_CHANGED"));
    t.is(yaml.code, 0);
    t.regex(yaml.stdout, new RegExp(`^id: ${id}$`, "m"));
    t.regex(yaml.stdout, /^events:\n {2}\S+ {2}#\d+ {2}created/m);

    const stop = await c("stop", "e2e-web", "--wait");
    t.is(stop.code, 0, stop.stderr);
    t.is(stop.stdout, `${id}\n`);
    const after = JSON.parse((await c("ps", "-o", "json", "--name", "e2e-web")).stdout);
    t.is(after.tasks[0].state, "TASK_STATE_COMPLETED");
    t.is(after.tasks[0].desiredState, "DESIRED_STATE_STOPPED");
    const left = await docker.listContainers({
      all: true,
      filters: { label: [`cube.task=${id}`] },
    });
    t.is(left.length, 0, "the container is removed");

    // The live event stream saw the whole life of the task, in revision order.
    await eventually(async () =>
      events.stdout().includes('"TASK_STATE_COMPLETED"') ? true : undefined,
    );
    const seen: Json[] = events
      .stdout()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((e) => e.task?.id === id);
    const states = seen
      .filter((e) => e.type === "TASK_EVENT_TYPE_STATE_CHANGED")
      .map((e) => e.task.state);
    t.true(states.includes("TASK_STATE_RUNNING"));
    t.is(states.at(-1), "TASK_STATE_COMPLETED");
    const revisions = seen.map((e) => BigInt(e.revision));
    t.deepEqual(
      revisions,
      [...revisions].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
    );
    events.signal("SIGINT");
    const ended = await events.exited;
    t.is(ended.code, 0, "Ctrl-C ends cube events cleanly");
  },
);

test.serial("logs: stdout and stderr apart, --tail, and -f follows new output", async (t) => {
  const run = await c(
    "run",
    HTTP_IMAGE,
    "--name",
    "e2e-talker",
    "--wait",
    "--",
    "sh",
    "-c",
    "echo out-1; echo err-1 >&2; echo out-2; sleep 2; echo out-late; sleep 300",
  );
  t.is(run.code, 0, run.stderr);
  const id = run.stdout.trim();
  t.teardown(() => c("stop", id));

  const follow = startCube(["logs", "-f", "e2e-talker", "--manager", (cluster as Cluster).manager]);
  t.teardown(() => follow.kill());
  await follow.waitFor(/out-late/, 20_000);
  // stderr is a second pipe: err-1 may be read after out-late even though it was written first.
  await follow.waitFor(/err-1/, 5_000, "stderr");
  t.regex(follow.stdout(), /out-1\nout-2\n/);
  t.notRegex(follow.stdout(), /err-1/);
  t.notRegex(follow.stderr(), /out-/);
  follow.signal("SIGINT");
  t.is((await follow.exited).code, 0);

  const tail = await c("logs", "--tail", "1", id);
  t.is(tail.code, 0);
  t.is(tail.stdout, "out-late\n");

  const json = await c("logs", id, "-o", "json");
  t.is(json.code, 0, json.stderr);
  const chunks: Json[] = json.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const text = (stream: string) =>
    chunks
      .filter((x) => x.stream === stream)
      .map((x) => Buffer.from(x.data, "base64").toString())
      .join("");
  t.regex(text("LOG_STREAM_STDOUT"), /out-1\nout-2\nout-late\n/);
  t.is(text("LOG_STREAM_STDERR"), "err-1\n");
});

test.serial("failures: exit codes and messages from the real manager", async (t) => {
  const stalling = await stallingRegistry(`e2e${Date.now()}`);
  t.teardown(() => stalling.close());
  t.teardown(() =>
    docker
      .getImage(stalling.image)
      .remove({ force: true })
      .catch(() => undefined),
  );
  // Independent of each other: run side by side.
  const [failing, noImage, stalled, missing, stopMissing, invalid, huge] = await Promise.all([
    // With a health check, --wait needs HEALTHY: a container that exits first has failed.
    c(
      "run",
      HTTP_IMAGE,
      "--name",
      "e2e-fail",
      "--port",
      "80",
      "--health-path",
      "/health",
      "--wait",
      "--",
      "sh",
      "-c",
      "exit 3",
    ),
    // An image the local registry does not have fails before it runs.
    c("run", "127.0.0.1:5000/cube-e2e-missing:1", "--name", "e2e-noimage", "--wait"),
    // A registry that stops sending mid-layer: the worker's --pull-stall-timeout ends it.
    c("run", stalling.image, "--name", "e2e-stall", "--restart", "never", "--wait"),
    c("inspect", "no-such-task"),
    c("stop", "no-such-task"),
    c("run", HTTP_IMAGE, "--id", "not a valid id!"),
    c("run", HTTP_IMAGE, "--name", "e2e-huge", "--memory", "100Ti", "--wait", "--timeout", "3s"),
  ]);
  t.is(failing.code, 3, failing.stderr);
  t.regex(failing.stderr, /\n {3}\d+\.\ds {2}FAILED {5}exit code 3\n/);
  t.regex(failing.stderr, /cube: task \S+ FAILED: exit code 3\n$/);

  t.is(noImage.code, 3, noImage.stderr);
  t.regex(noImage.stderr, /cube: task \S+ FAILED: .*127\.0\.0\.1:5000\/cube-e2e-missing:1/);

  t.is(stalled.code, 3, stalled.stderr);
  t.true(
    stalled.stderr.includes(
      `FAILED: pulling image ${stalling.image} stalled: no progress for 2s, so the pull was cancelled`,
    ),
    stalled.stderr,
  );

  t.is(missing.code, 4);
  t.is(missing.stderr, "cube: no task no-such-task\n");
  t.is(stopMissing.code, 4);
  t.is(stopMissing.stderr, "cube: no task no-such-task\n");

  t.is(invalid.code, 2);
  t.regex(invalid.stderr, /^cube: .*\bid\b/);
  t.notRegex(invalid.stderr, /\n\s+at /);

  t.is(huge.code, 6, huge.stderr);
  t.regex(huge.stderr, /cube: task \S+ is still PENDING after 3s, no worker can take it: .+/);
  const stopHuge = await c("stop", huge.stdout.trim());
  t.is(stopHuge.code, 0, stopHuge.stderr);
});

test.serial("run -f task.yaml with an idempotency key runs one task", async (t) => {
  const file = join((cluster as Cluster).dir, "task.yaml");
  await writeFile(
    file,
    `id: e2e-file-1
spec:
  name: e2e-file
  image: ${HTTP_IMAGE}
  labels: { suite: e2e-file }
  resources: { memoryBytes: 32Mi }
`,
  );
  const first = await c("run", "-f", file, "--wait");
  t.is(first.code, 0, first.stderr);
  t.is(first.stdout, "e2e-file-1\n");
  const again = await c("run", "-f", file);
  t.is(again.code, 0, again.stderr);
  t.is(again.stdout, "e2e-file-1\n");
  const ps = JSON.parse((await c("ps", "--label", "suite=e2e-file", "--json")).stdout);
  t.is(ps.tasks.length, 1);
  t.is(ps.tasks[0].spec.resources.memoryBytes, String(32 * 1024 * 1024));
  const stop = await c("stop", "e2e-file-1", "--wait", "--json");
  t.is(stop.code, 0, stop.stderr);
  const stopped = JSON.parse(stop.stdout);
  t.is(stopped.id, "e2e-file-1");
  t.is(stopped.state, "TASK_STATE_COMPLETED");
});

test.serial("run --count submits numbered copies in one call, idempotent with --id", async (t) => {
  const args = ["--id", "e2e-count", "--name", "e2e-count", "--label", "suite=e2e-count"];
  const first = await c("run", HTTP_IMAGE, "--count", "3", "--memory", "32Mi", ...args);
  t.is(first.code, 0, first.stderr);
  t.is(first.stdout, "e2e-count-0\ne2e-count-1\ne2e-count-2\n");
  const again = await c(
    "run",
    HTTP_IMAGE,
    "--count",
    "3",
    "--memory",
    "32Mi",
    ...args,
    "-o",
    "json",
  );
  t.is(again.code, 0, again.stderr);
  const answer = JSON.parse(again.stdout) as { tasks: { id: string; spec: { name: string } }[] };
  t.deepEqual(
    answer.tasks.map((x) => [x.id, x.spec.name]),
    [0, 1, 2].map((i) => [`e2e-count-${i}`, `e2e-count-${i}`]),
  );
  const changed = await c("run", HTTP_IMAGE, "--count", "4", "--memory", "64Mi", ...args);
  t.is(changed.code, 1, changed.stderr);
  t.regex(changed.stderr, /^cube: requests\[0\]: task "e2e-count-0" already exists/);
  const ps = JSON.parse((await c("ps", "--label", "suite=e2e-count", "--json")).stdout);
  t.is(ps.tasks.length, 3, "the refused batch stored nothing (no e2e-count-3)");
  const stop = await c("stop", "e2e-count-0", "e2e-count-1", "e2e-count-2", "--wait");
  t.is(stop.code, 0, stop.stderr);
});

test.serial("Ctrl-C stops the workers, then the manager, cleanly (exit 0)", async (t) => {
  const [manager, ...workers] = (cluster as Cluster).processes as [RunningCube, ...RunningCube[]];
  for (const w of workers) w.signal("SIGINT");
  for (const w of workers) {
    const ended = await w.exited;
    t.is(ended.code, 0, ended.stderr);
  }
  manager.signal("SIGINT");
  const ended = await manager.exited;
  t.is(ended.code, 0, ended.stderr);
});
