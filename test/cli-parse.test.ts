import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import test from "ava";
import { buildSpec, givenSpecFlags } from "../cli/build-spec.js";
import { parseCapability } from "../cli/capabilities.js";
import { CliError } from "../cli/cli-error.js";
import { colorsFor } from "../cli/colors.js";
import { type ManagerFlags, managerCommand, managerOptions } from "../cli/commands/manager.js";
import { describeError, failedBeforeSending } from "../cli/describe-error.js";
import { ExitCode } from "../cli/exit-codes.js";
import { renderTable } from "../cli/format-table.js";
import { stateLabel, TASK_HEAD, taskRow } from "../cli/format-task.js";
import type { Io } from "../cli/io.js";
import { LiveTable } from "../cli/live-table.js";
import { parseCpu } from "../cli/parse-cpu.js";
import { parseCount, parseRestartMode, parseStates, positiveCount } from "../cli/parse-enum.js";
import { parseJobFile } from "../cli/parse-job-file.js";
import { parseKeyValue } from "../cli/parse-key-value.js";
import { formatPort, parsePort } from "../cli/parse-port.js";
import { formatSize, parseSize } from "../cli/parse-size.js";
import { parseTaskFile } from "../cli/parse-task-file.js";
import { followWatch, isTransient } from "../cli/reconnect.js";
import { pickTask } from "../cli/resolve-task.js";
import { taskCopies } from "../cli/task-copies.js";
import { TaskWaiter, willRestart } from "../cli/task-waiter.js";
import {
  DesiredState,
  HealthStatus,
  Protocol,
  RestartMode,
  type Task,
  type TaskEvent,
  TaskEventSchema,
  TaskEventType,
  TaskSchema,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { MAX_TIMER_MS } from "../lib/clock.js";
import { parseSwitch } from "../lib/env-setting.js";
import { formatDuration } from "../lib/format-ms.js";
import { formatAge, parseDuration, parseEnvDuration } from "../lib/parse-duration.js";
import { captureIo } from "./cli-harness.js";

const plain = colorsFor({ isTTY: false }, {});
const colored = colorsFor({ isTTY: true }, {});

test("sizes: plain bytes, decimal and binary units, fractions", (t) => {
  t.is(parseSize("1048576"), 1048576n);
  t.is(parseSize("256Mi"), 268435456n);
  t.is(parseSize("1Gi"), 1073741824n);
  t.is(parseSize("512M"), 512_000_000n);
  t.is(parseSize("1.5Gi"), 1610612736n);
  t.is(parseSize("2k"), 2000n);
  t.is(parseSize("64MiB"), 67108864n);
  t.is(parseSize("10Ti"), 10n * 2n ** 40n);
  for (const bad of ["", "12X", "-1Mi", "Mi", "1 0", "1.2.3Gi"]) {
    t.throws(() => parseSize(bad), { message: /is not a size/ }, bad);
  }
  // Up to uint64, the fields' type: past it no request could carry the size.
  t.is(parseSize("18446744073709551615"), 2n ** 64n - 1n);
  for (const huge of ["18446744073709551616", "99999999999999999999999", "99999999Pi"]) {
    t.throws(
      () => parseSize(huge),
      { message: `"${huge}" is out of range: a size is at most 18446744073709551615 bytes` },
      huge,
    );
  }
});

test("capabilities: Linux names as Docker takes them, any case, CAP_ optional, ALL; none only where allowed", (t) => {
  t.is(parseCapability("net_raw"), "NET_RAW");
  t.is(parseCapability(" CAP_SYS_ADMIN "), "CAP_SYS_ADMIN");
  t.is(parseCapability("cap_checkpoint_restore"), "CAP_CHECKPOINT_RESTORE");
  t.is(parseCapability("all"), "ALL");
  t.is(parseCapability("none", true), "NONE");
  for (const bad of ["NOT_A_CAP", "CAP_ALL", "none", "", "NET RAW"]) {
    t.throws(() => parseCapability(bad), { message: /is not a Linux capability/ }, bad);
  }
});

test("sizes print in binary units", (t) => {
  t.is(formatSize(0n), "0B");
  t.is(formatSize(268435456n), "256Mi");
  t.is(formatSize(1610612736n), "1.5Gi");
  t.is(formatSize(2n ** 40n * 3n), "3Ti");
});

test("durations: units, compounds, and no bare numbers", (t) => {
  t.is(parseDuration("500ms"), 500);
  t.is(parseDuration("2s"), 2000);
  t.is(parseDuration("1.5s"), 1500);
  t.is(parseDuration("1m30s"), 90_000);
  t.is(parseDuration("2h"), 7_200_000);
  t.is(parseDuration("0"), 0);
  for (const bad of ["500", "", "2 s", "1x", "s", "-1s", "1s2"]) {
    t.throws(() => parseDuration(bad), { message: /is not a duration/ }, bad);
  }
  // Longer than a Node timer can wait (it would fire after 1 ms): refused, naming the most.
  t.is(MAX_TIMER_MS, 2 ** 31 - 1);
  t.is(parseDuration("596h31m23s"), 2_147_483_000);
  t.is(parseDuration("596h31m23s647ms"), MAX_TIMER_MS);
  for (const long of ["596h31m23s648ms", "600h", "24.9h1000h", " 720h "]) {
    t.throws(
      () => parseDuration(long),
      {
        message: `"${long.trim()}" is too long: at most 596h31m23s (2147483647ms, about 24.8 days: the longest a timer can wait)`,
      },
      long,
    );
  }
  // What no timer waits on (a token's TTL) may say so.
  t.is(parseDuration("720h", Number.MAX_SAFE_INTEGER), 2_592_000_000);
  t.is(parseEnvDuration("2147483647"), MAX_TIMER_MS);
  t.is(parseEnvDuration("90s"), 90_000);
  t.throws(() => parseEnvDuration("2147483648"), { message: /"2147483648" is too long/ });
  t.throws(() => parseEnvDuration("600h"), { message: /"600h" is too long/ });
  t.is(parseEnvDuration("720h", Number.MAX_SAFE_INTEGER), 2_592_000_000);
  t.is(parseEnvDuration("2592000000", Number.MAX_SAFE_INTEGER), 2_592_000_000);
  t.is(formatDuration(850), "850ms");
  t.is(formatDuration(1500), "1.5s");
  t.is(formatDuration(120_000), "2m");
  t.is(formatDuration(150_000), "2m30s");
  t.is(formatAge(45_000), "45s");
  t.is(formatAge(200_000), "3m20s");
  t.is(formatAge(25 * 60_000), "25m");
  t.is(formatAge(5 * 3_600_000 + 12 * 60_000), "5h12m");
  t.is(formatAge(3 * 86_400_000), "3d");
});

test("ports: docker -p forms", (t) => {
  const p = (s: string) => {
    const m = parsePort(s);
    return [m.hostIp, m.hostPort, m.containerPort, m.protocol];
  };
  t.deepEqual(p("80"), ["", 0, 80, Protocol.TCP]);
  t.deepEqual(p("8080:80"), ["", 8080, 80, Protocol.TCP]);
  t.deepEqual(p("127.0.0.1:8080:80"), ["127.0.0.1", 8080, 80, Protocol.TCP]);
  t.deepEqual(p("[::1]:8080:80/tcp"), ["::1", 8080, 80, Protocol.TCP]);
  t.deepEqual(p("5353:53/udp"), ["", 5353, 53, Protocol.UDP]);
  t.deepEqual(p("0:80"), ["", 0, 80, Protocol.TCP]);
  for (const bad of ["", "http", "0", "70000", "80:70000", "8080:80/sctp", "a:1:2", ":80"]) {
    t.throws(() => parsePort(bad), undefined, bad);
  }
  t.is(formatPort(parsePort("127.0.0.1:8080:80")), "127.0.0.1:8080->80/tcp");
  t.is(formatPort(parsePort("53/udp")), "53/udp");
  t.is(formatPort(parsePort("[::1]:8080:80")), "[::1]:8080->80/tcp");
});

test("KEY=VALUE flags; KEY alone takes the caller's environment", (t) => {
  t.deepEqual(parseKeyValue("A=1", "variable"), ["A", "1"]);
  t.deepEqual(parseKeyValue("A=x=y", "variable"), ["A", "x=y"]);
  t.deepEqual(parseKeyValue("A=", "variable"), ["A", ""]);
  t.deepEqual(
    parseKeyValue("HOME", "variable", (k) => ({ HOME: "/root" })[k]),
    ["HOME", "/root"],
  );
  t.throws(() => parseKeyValue("NOPE", "variable", () => undefined), {
    message: /NOPE is not set in your environment/,
  });
  t.throws(() => parseKeyValue("app", "label"), { message: /use KEY=VALUE/ });
  t.throws(() => parseKeyValue("=v", "label"), { message: /use KEY=VALUE/ });
});

test("cpu, states, restart modes, counts", (t) => {
  t.is(parseCpu("0.5"), 0.5);
  t.is(parseCpu("2"), 2);
  t.is(parseCpu("250m"), 0.25);
  t.throws(() => parseCpu("lots"));
  t.deepEqual(parseStates("running"), [TaskState.RUNNING]);
  t.deepEqual(parseStates("Pending, FAILED"), [TaskState.PENDING, TaskState.FAILED]);
  t.deepEqual(parseStates("TASK_STATE_COMPLETED"), [TaskState.COMPLETED]);
  t.throws(() => parseStates("sleeping"), { message: /use pending, scheduled/ });
  t.is(parseRestartMode("on-failure"), RestartMode.ON_FAILURE);
  t.is(parseRestartMode("always"), RestartMode.ALWAYS);
  t.throws(() => parseRestartMode("sometimes"));
  t.is(parseCount("3"), 3);
  t.throws(() => parseCount("-1"));
  t.throws(() => parseCount("1.5"));
  t.is(parseCount("5000", 5000, 1), 5000);
  t.throws(() => parseCount("0", 5000, 1), { message: /between 1 and 5000/ });
});

test("positiveCount: 0 refused with the flag's own message, else a whole number from 1", (t) => {
  const parse = positiveCount("0 would mean something else");
  t.is(parse("1"), 1);
  t.is(parse(" 20 "), 20);
  t.is(parse(String(2 ** 32 - 1)), 2 ** 32 - 1);
  for (const zero of ["0", "00", " 0 "]) {
    t.throws(() => parse(zero), { message: "0 would mean something else" }, zero);
  }
  for (const bad of ["-1", "1.5", "many", String(2 ** 32)]) {
    t.throws(() => parse(bad), {
      message: `"${bad}" is not a whole number between 1 and 4294967295`,
    });
  }
});

test("run --count: ids and names numbered from 0, or left to the manager", (t) => {
  const spec = buildSpec("busybox", [], { name: "web" });
  const named = taskCopies({ id: "job", spec }, 3);
  t.deepEqual(
    named.map((r) => [r.id, r.spec.name]),
    [
      ["job-0", "web-0"],
      ["job-1", "web-1"],
      ["job-2", "web-2"],
    ],
  );
  t.is(spec.name, "web", "the given spec is left as it is");
  const bare = taskCopies({ spec: buildSpec("busybox", [], {}) }, 2);
  t.deepEqual(
    bare.map((r) => [r.id, r.spec.name]),
    [
      [undefined, ""],
      [undefined, ""],
    ],
  );
});

test("run flags build the TaskSpec", (t) => {
  const spec = buildSpec("cube/httpd:local", ["sh", "-c", "echo hi"], {
    name: "web",
    env: [["A", "1"]],
    port: [parsePort("8080:80")],
    cpu: 0.5,
    memory: parseSize("64Mi"),
    healthPath: "/health",
    healthStartPeriod: 30_000,
    restart: RestartMode.ON_FAILURE,
    maxRestarts: 5,
    stopTimeout: parseDuration("1m30s"),
    label: [["app", "web"]],
  });
  t.is(spec.image, "cube/httpd:local");
  t.is(spec.name, "web");
  t.deepEqual(spec.args, ["sh", "-c", "echo hi"]);
  t.deepEqual(spec.command, []);
  t.deepEqual(spec.env, { A: "1" });
  t.is(spec.ports[0]?.hostPort, 8080);
  t.is(spec.resources?.cpu, 0.5);
  t.is(spec.resources?.memoryBytes, 67108864n);
  t.is(spec.healthCheck?.path, "/health");
  t.is(spec.healthCheck?.startPeriod?.seconds, 30n);
  t.is(spec.restartPolicy?.mode, RestartMode.ON_FAILURE);
  t.is(spec.restartPolicy?.maxRestarts, 5);
  t.is(spec.stopTimeout?.seconds, 90n);
  t.deepEqual(spec.labels, { app: "web" });
  t.is(buildSpec("x", [], { stopTimeout: 0 }).stopTimeout?.seconds, 0n, "0s is kept: kill at once");

  const bare = buildSpec("busybox", [], {});
  t.is(bare.resources, undefined);
  t.is(bare.restartPolicy, undefined);
  t.is(bare.healthCheck, undefined);
  t.is(bare.stopTimeout, undefined, "unset: the manager's default");

  t.throws(() => buildSpec("x", [], { healthPath: "health", port: [parsePort("80")] }), {
    message: /must start with "\/"/,
  });
  t.throws(() => buildSpec("x", [], { healthPath: "/health" }), { message: /needs a --port/ });
  t.throws(() => buildSpec("x", [], { healthStartPeriod: 1000, port: [parsePort("80")] }), {
    message: /--health-start-period needs a --health-path/,
  });
  t.deepEqual(givenSpecFlags({ name: "a", env: [], port: [parsePort("80")] }), [
    "--name",
    "--port",
  ]);
});

test("task files: YAML and JSON, TaskSpec or {id, spec}, sizes, durations, typos refused", (t) => {
  const yaml = `
name: web
image: cube/httpd:local
ports:
  - containerPort: 80
    hostPort: 8080
resources:
  cpu: 0.5
  memoryBytes: 256Mi
restartPolicy:
  mode: RESTART_MODE_ON_FAILURE
  backoff: 0.5s
health_check:
  path: /health
  interval: 500ms
stopTimeout: 1m30s
labels: { app: web }
`;
  const { spec, id } = parseTaskFile(yaml, "task.yaml");
  t.is(id, undefined);
  t.is(spec.name, "web");
  t.is(spec.ports[0]?.containerPort, 80);
  t.is(spec.resources?.memoryBytes, 268435456n);
  t.is(spec.restartPolicy?.mode, RestartMode.ON_FAILURE);
  t.is(spec.restartPolicy?.backoff?.nanos, 500_000_000);
  t.is(spec.healthCheck?.path, "/health");
  t.is(spec.healthCheck?.interval?.nanos, 500_000_000, "500ms as people write it");
  t.is(spec.stopTimeout?.seconds, 90n, "1m30s as people write it");
  t.throws(() => parseTaskFile("image: x\nstopTimeout: soon\n", "t.yaml"), {
    message: /^t\.yaml: .*stopTimeout/,
  });

  const json = JSON.stringify({ id: "web-1", spec: { image: "busybox", args: ["true"] } });
  const request = parseTaskFile(json, "task.json");
  t.is(request.id, "web-1");
  t.deepEqual(request.spec.args, ["true"]);

  t.throws(() => parseTaskFile("imag: busybox\n", "t.yaml"), { message: /t\.yaml: .*imag/ });
  t.throws(() => parseTaskFile("name: x\n", "t.yaml"), { message: /image is required/ });
  t.throws(() => parseTaskFile("{nope", "t.json"), { message: /^t\.json: / });
  // A YAML error is one line: where, and the line it is about (the parser's own message
  // went on over lines with a caret, and the CLI showed its first: "…, column 1:").
  t.throws(() => parseTaskFile("image: a\nname: x\nname: y\n", "t.yaml"), {
    message: "t.yaml: Map keys must be unique at line 3, column 1 (name: y)",
  });
  t.throws(() => parseJobFile("name: a\nname: b\n", "j.yaml"), {
    message: "j.yaml: Map keys must be unique at line 2, column 1 (name: b)",
  });
  t.throws(() => parseTaskFile("- a\n- b\n", "t.yaml"), { message: /expected an object/ });
  t.throws(() => parseTaskFile('{"spec": {"image": "x"}, "extra": 1}', "t.json"), {
    message: /unknown field "extra"/,
  });
});

test("a job file takes durations as people write them, the template's stop_timeout too", (t) => {
  const job = parseJobFile(
    [
      "name: web",
      "count: 1",
      "template: { image: cube/httpd:local, stopTimeout: 1m30s, healthCheck: { path: /h, interval: 500ms } }",
      "update: { minHealthyTime: 2s }",
    ].join("\n"),
    "j.yaml",
  );
  t.is(job.template?.stopTimeout?.seconds, 90n);
  t.is(job.template?.healthCheck?.interval?.nanos, 500_000_000);
  t.is(job.update?.minHealthyTime?.seconds, 2n);
  const snake = parseJobFile("name: web\ntemplate: { image: x, stop_timeout: 45s }\n", "j.yaml");
  t.is(snake.template?.stopTimeout?.seconds, 45n);
});

test("tables: borderless, aligned, no trailing spaces, colours do not skew widths", (t) => {
  const out = renderTable(
    ["ID", "STATE", "AGE"],
    [
      ["a", colored.green("RUNNING"), "5s"],
      ["bbbbbb", "PENDING", "12m"],
    ],
  );
  const lines = out.trimEnd().split("\n");
  t.is(lines.length, 3);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping ANSI colour codes
  const strip = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");
  t.is(strip(lines[0] as string), "ID      STATE    AGE");
  t.is(strip(lines[1] as string), "a       RUNNING  5s");
  t.is(strip(lines[2] as string), "bbbbbb  PENDING  12m");
  for (const line of lines) t.is(line, line.trimEnd());
  t.is(renderTable([], []), "");
});

function task(fields: MessageInitShape<typeof TaskSchema>): Task {
  const base: MessageInitShape<typeof TaskSchema> = {
    id: "3f2a9c01d4e5f6a7b8c9",
    spec: { name: "web", image: "cube/httpd:local" },
    desiredState: DesiredState.RUNNING,
    state: TaskState.PENDING,
  };
  return create(TaskSchema, { ...base, ...fields } as MessageInitShape<typeof TaskSchema>);
}

test("ps rows: short id, worker name, ports, age; colour only on a terminal", (t) => {
  const now = 1_000_000_000_000;
  const row = taskRow(
    task({
      state: TaskState.RUNNING,
      health: HealthStatus.HEALTHY,
      workerId: "w-123456789012345",
      ports: [{ hostIp: "127.0.0.1", hostPort: 8080, containerPort: 80, protocol: Protocol.TCP }],
      restartCount: 2,
      createdAt: timestampFromMs(now - 65_000),
    }),
    { now, workerNames: new Map([["w-123456789012345", "node-a"]]), colors: plain },
  );
  t.deepEqual(row, [
    "3f2a9c01d4e5",
    "web",
    "RUNNING (healthy)",
    "node-a",
    "cube/httpd:local",
    "127.0.0.1:8080->80/tcp",
    "2",
    "65s",
  ]);
  t.is(row.length, TASK_HEAD.length);
  t.is(stateLabel(task({ state: TaskState.FAILED }), plain), "FAILED");
  t.not(stateLabel(task({ state: TaskState.FAILED }), colored), "FAILED");
  t.regex(stateLabel(task({ state: TaskState.FAILED }), colored), /FAILED/);
});

test("a task is found by id, unique prefix or name", (t) => {
  const a = task({ id: "aaaa1111" });
  const b = task({ id: "aaaa2222", spec: { name: "db", image: "x" } });
  const oldWeb = task({
    id: "cccc3333",
    state: TaskState.COMPLETED,
    desiredState: DesiredState.STOPPED,
  });
  t.is(pickTask("aaaa2222", [a, b]).id, "aaaa2222");
  t.is(pickTask("aaaa1", [a, b]).id, "aaaa1111");
  t.is(pickTask("db", [a, b]).id, "aaaa2222");
  // Two tasks named web, one stopped: the live one is meant.
  t.is(pickTask("web", [a, b, oldWeb]).id, "aaaa1111");
  const ambiguous = t.throws(() => pickTask("aaaa", [a, b]));
  t.true(ambiguous instanceof CliError);
  t.is((ambiguous as CliError).exitCode, ExitCode.Usage);
  const missing = t.throws(() => pickTask("zzz", [a, b]));
  t.is(missing?.message, "no task zzz");
  t.is((missing as CliError).exitCode, ExitCode.NotFound);
  // An empty reference is a prefix of every id: refused, not the only task or "could mean 2".
  for (const blank of ["", "  "]) {
    for (const tasks of [[a], [a, b]]) {
      const refused = t.throws(() => pickTask(blank, tasks));
      t.is(refused?.message, "a task id or name is required");
      t.is((refused as CliError).exitCode, ExitCode.Usage);
    }
  }
});

function event(type: TaskEventType, t: Task, message = ""): TaskEvent {
  return create(TaskEventSchema, { revision: t.revision, type, task: t, message });
}

test("--wait: PENDING → SCHEDULED → RUNNING → HEALTHY succeeds, with elapsed times", (t) => {
  const start = 1_000_000;
  const spec = {
    name: "web",
    image: "i",
    healthCheck: { path: "/health" },
    ports: [{ containerPort: 80 }],
  };
  const w = new TaskWaiter({ startedAt: start, workerNames: new Map([["w1", "node-a"]]) });
  const s0 = w.start(task({ spec, reason: "waiting for a worker" }), start + 10);
  t.is(s0.outcome, undefined);
  t.regex(s0.lines[0] as string, /^\s+0\.0s {2}PENDING/);
  const scheduled = task({ spec, state: TaskState.SCHEDULED, workerId: "w1", revision: 2n });
  t.regex(
    w.event(event(TaskEventType.STATE_CHANGED, scheduled), start + 100).lines[0] as string,
    /SCHEDULED\s+on node-a/,
  );
  const progress = w.event(
    event(TaskEventType.PROGRESS, scheduled, "pulling image 45%"),
    start + 300,
  );
  t.deepEqual(progress.lines, []);
  t.regex(progress.progress as string, /0\.3s {2}pulling image 45%/);
  const running = task({
    spec,
    state: TaskState.RUNNING,
    workerId: "w1",
    ports: [{ hostIp: "127.0.0.1", hostPort: 8080, containerPort: 80 }],
  });
  const r = w.event(event(TaskEventType.STATE_CHANGED, running), start + 800);
  t.is(r.outcome, undefined, "running is not enough with a health check");
  t.regex(r.lines[0] as string, /0\.8s {2}RUNNING\s+on node-a, 127\.0\.0\.1:8080->80\/tcp/);
  const healthy = task({ ...running, health: HealthStatus.HEALTHY });
  const h = w.event(event(TaskEventType.HEALTH_CHANGED, healthy), start + 1900);
  t.is(h.outcome?.exitCode, ExitCode.Ok);
  t.regex(h.outcome?.message as string, /RUNNING and healthy after 1\.9s/);
});

test("--wait: without a health check RUNNING is enough; FAILED ends it unless a restart is due", (t) => {
  const w = new TaskWaiter({ startedAt: 0 });
  t.is(w.start(task({ state: TaskState.RUNNING }), 5).outcome?.exitCode, ExitCode.Ok);

  const failed = task({ state: TaskState.FAILED, reason: "exit code 1", exitCode: 1 });
  const f = new TaskWaiter({ startedAt: 0 }).start(failed, 5);
  t.is(f.outcome?.exitCode, ExitCode.TaskFailed);
  t.regex(f.outcome?.message as string, /FAILED: exit code 1/);

  const retrying = task({
    state: TaskState.FAILED,
    reason: "exit code 1",
    spec: { image: "i", restartPolicy: { mode: RestartMode.ON_FAILURE, maxRestarts: 2 } },
    restartCount: 1,
  });
  t.true(willRestart(retrying));
  t.is(new TaskWaiter({ startedAt: 0 }).start(retrying, 5).outcome, undefined);
  t.false(willRestart(task({ ...retrying, restartCount: 2 })));
  t.false(willRestart(task({ ...retrying, desiredState: DesiredState.STOPPED })));
  const always = task({
    state: TaskState.FAILED,
    spec: { image: "i", restartPolicy: { mode: RestartMode.ALWAYS } },
    restartCount: 40,
  });
  t.true(willRestart(always), "always without max_restarts: no limit");

  const done = new TaskWaiter({ startedAt: 0 }).start(
    task({ state: TaskState.COMPLETED, exitCode: 0 }),
    5,
  );
  t.is(done.outcome?.exitCode, ExitCode.Ok);
  const stopped = new TaskWaiter({ startedAt: 0 }).start(
    task({ state: TaskState.RUNNING, desiredState: DesiredState.STOPPED }),
    5,
  );
  t.is(stopped.outcome?.exitCode, ExitCode.TaskFailed);
});

test("--wait: a task still PENDING at the deadline reports why it cannot be placed", (t) => {
  const w = new TaskWaiter({ startedAt: 0 });
  w.start(task({ reason: "0/2 workers fit: 2 lack 64Gi memory" }), 0);
  const out = w.timeout(120_000, 120_000);
  t.is(out.exitCode, ExitCode.Timeout);
  t.regex(out.message, /still PENDING after 2m.*0\/2 workers fit: 2 lack 64Gi memory/);
  const s = new TaskWaiter({ startedAt: 0, goal: "stopped" });
  t.is(s.start(task({ state: TaskState.RUNNING }), 0).outcome, undefined);
  t.is(
    s.event(
      event(TaskEventType.STATE_CHANGED, task({ state: TaskState.COMPLETED, reason: "stopped" })),
      10,
    ).outcome?.exitCode,
    ExitCode.Ok,
  );
});

test("errors: one line and the documented exit code", (t) => {
  const refused = new ConnectError("connect ECONNREFUSED 127.0.0.1:5555", Code.Unavailable);
  const e = describeError(refused, "127.0.0.1:5555");
  t.is(e.exitCode, ExitCode.Unreachable);
  t.is(
    e.message,
    "cannot reach the manager at 127.0.0.1:5555 — start one with `cube dev` or `cube manager`, or set --manager/CUBE_MANAGER",
  );
  const invalid = describeError(
    new ConnectError("spec.image: required", Code.InvalidArgument),
    "x",
  );
  t.is(invalid.message, "spec.image: required");
  t.is(invalid.exitCode, ExitCode.Usage);
  t.is(
    describeError(new ConnectError("task x not found", Code.NotFound), "x").exitCode,
    ExitCode.NotFound,
  );
  t.is(describeError(new Error("boom"), "x").exitCode, ExitCode.Error);
  t.deepEqual(
    [
      ExitCode.Ok,
      ExitCode.Error,
      ExitCode.Usage,
      ExitCode.TaskFailed,
      ExitCode.NotFound,
      ExitCode.Unreachable,
      ExitCode.Timeout,
    ],
    [0, 1, 2, 3, 4, 5, 6],
  );
});

/** An Io whose stdout (a terminal or not) is kept in `out()` until `clear()`. */
function tableIo(isTTY: boolean): { io: Io; out: () => string; clear: () => void } {
  let out = "";
  const io = {
    stdout: {
      isTTY,
      write(s: string) {
        out += s;
        return true;
      },
    },
    stderr: { write: () => true },
    env: {},
    now: () => 0,
    interrupted: new AbortController().signal,
  } as unknown as Io;
  return {
    io,
    out: () => out,
    clear: () => {
      out = "";
    },
  };
}

test("watch tables piped: first table, then one aligned row per change, unchanged rows skipped", (t) => {
  const { io, out } = tableIo(false);
  const table = new LiveTable<{ name: string; state: string }>(
    io,
    ["NAME", "STATE"],
    (x) => [x.name, x.state],
    [6, 9],
  );
  table.start([["a", { name: "a", state: "PENDING" }]]);
  table.set("a", { name: "a", state: "SCHEDULED" });
  table.set("a", { name: "a", state: "SCHEDULED" });
  table.set("b", { name: "bb", state: "RUNNING" });
  table.close();
  t.is(out(), "NAME    STATE\na       PENDING\na       SCHEDULED\nbb      RUNNING\n");
});

test("watch tables on a terminal: replace (a list read again after a reconnect) drops the rows it leaves out, a note shows under the rows until cleared; a table never started draws nothing", (t) => {
  const { io, out, clear } = tableIo(true);
  const table = new LiveTable<string>(io, ["NAME"], (x) => [x]);
  table.close();
  t.is(out(), "", "closed before it started (the first list failed): nothing drawn");
  const live = new LiveTable<string>(io, ["NAME"], (x) => [x]);
  live.start([
    ["a", "alpha"],
    ["b", "beta"],
  ]);
  live.replace([
    ["b", "beta"],
    ["c", "gamma"],
  ]);
  live.note("lost the manager at m:5555, reconnecting…");
  clear();
  live.close();
  const last = out().split("\x1b[H\x1b[2J").at(-1) ?? "";
  t.is(last, "NAME\nbeta\ngamma\n\nlost the manager at m:5555, reconnecting…\n");
  live.note(undefined);
  clear();
  live.close();
  t.is(out().split("\x1b[H\x1b[2J").at(-1), "NAME\nbeta\ngamma\n");
});

test("errors: the TLS hint only for a connection that never worked; a cut after answers is a lost connection", (t) => {
  const cut = () =>
    new ConnectError("http/2 stream closed with error code CANCEL (0x8)", Code.Canceled);
  // Nothing answered yet, plaintext: maybe a TLS port (a TLS server closes such a client).
  const first = describeError(cut(), "127.0.0.1:5555", false, false);
  t.regex(first.message, /if it serves TLS, give its CA with --ca/);
  // The manager answered before: a working connection was cut, TLS has nothing to do with it.
  const later = describeError(cut(), "127.0.0.1:5555", false, true);
  t.is(
    later.message,
    "lost the connection to the manager at 127.0.0.1:5555 (http/2 stream closed with error code CANCEL (0x8))",
  );
  t.is(later.exitCode, ExitCode.Unreachable);
  // An error the manager itself sent (grpc-status came back) is no TLS port either.
  const shutting = new ConnectError(
    "the manager is shutting down",
    Code.Unavailable,
    new Headers({ "grpc-status": "14" }),
  );
  const said = describeError(shutting, "127.0.0.1:5555", false, false);
  t.is(said.message, "the manager is shutting down");
  t.is(said.exitCode, ExitCode.Unreachable);
  // A refused connection stays "cannot reach", answered before or not.
  const refused = new ConnectError("connect ECONNREFUSED 127.0.0.1:5555", Code.Unavailable);
  t.regex(
    describeError(refused, "127.0.0.1:5555", false, true).message,
    /^cannot reach the manager/,
  );
});

test("errors: a request connect-es cannot encode is an internal client error, never a lost connection, TLS trouble or worth a retry", async (t) => {
  // The errors connect-es itself throws, binary (gRPC's) and JSON: INTERNAL, as a cut call's.
  // A uint32 past its range fails the binary encoding; JSON takes it, not a string.
  const local: ConnectError[] = [];
  for (const [useBinaryFormat, pageSize] of [
    [true, 2 ** 40],
    [false, "x" as unknown as number],
  ] as const) {
    const client = createClient(
      TaskService,
      createRouterTransport(() => {}, { transport: { useBinaryFormat } }),
    );
    const error = await t.throwsAsync(client.listTasks({ pageSize }));
    t.true(error instanceof ConnectError);
    t.is((error as ConnectError).code, Code.Internal);
    local.push(error as ConnectError);
  }
  for (const error of local) {
    t.true(failedBeforeSending(error), error.rawMessage);
    t.false(isTransient(error), error.rawMessage);
    for (const [tls, answered] of [
      [false, false],
      [false, true],
      [true, false],
    ] as const) {
      const said = describeError(error, "127.0.0.1:5555", tls, answered);
      t.regex(said.message, /^internal client error, nothing was sent to the manager: /);
      t.regex(said.message, /page_size/);
      t.is(said.exitCode, ExitCode.Error);
    }
  }
  // A cut connection's INTERNAL stays one, and so does one the manager sent with that text.
  const cut = new ConnectError(
    "http/2 stream closed with error code INTERNAL_ERROR",
    Code.Internal,
  );
  t.false(failedBeforeSending(cut));
  t.true(isTransient(cut));
  const sent = new ConnectError(
    "serialize binary: oops",
    Code.Internal,
    new Headers({ "grpc-status": "13" }),
  );
  t.false(failedBeforeSending(sent));
});

test("followWatch: a manager that answers but whose watch fails before any message is retried ever further apart (500 ms doubling to 8 s), not every 500 ms", async (t) => {
  const stderr: string[] = [];
  const ac = new AbortController();
  const io = {
    stdout: { write: () => true },
    stderr: { write: (s: string) => stderr.push(s) },
    env: {},
    now: () => Date.now(),
    interrupted: ac.signal,
  } as unknown as Io;
  const opened: number[] = [];
  const started = Date.now();
  const run = followWatch(
    io,
    "m:5555",
    ac.signal,
    async () => {
      opened.push(Date.now() - started);
      // The list answered; the watch itself fails at once, every time.
      const failing: AsyncIterable<never> = {
        [Symbol.asyncIterator]: () => ({
          next: () => Promise.reject(new ConnectError("stream reset", Code.Internal)),
        }),
      };
      return failing;
    },
    () => undefined,
  );
  await new Promise((r) => setTimeout(r, 3200));
  ac.abort();
  const ended = await run.catch((e: unknown) => e);
  t.is(ConnectError.from(ended).code, Code.Canceled, "Ctrl-C ends it");
  // Opened at 0, then 1,000 and 2,000 ms after each failure (the first watch failed without
  // a message too): 0, ~1,000, ~3,000. Every 500 ms would have been 7 opens.
  t.true(opened.length >= 3 && opened.length <= 4, `opened at ${opened.join(", ")} ms`);
  const gaps = opened.slice(1).map((at, i) => at - (opened[i] as number));
  t.true(
    gaps.every((g, i) => i === 0 || g > (gaps[i - 1] as number) * 1.5),
    `gaps ${gaps}`,
  );
});

/** The options `cube manager args…` would start the manager with (commander parses the flags). */
async function managerArgs(args: string[], env: NodeJS.ProcessEnv = {}) {
  const cmd = managerCommand(captureIo(env))
    .exitOverride()
    .configureOutput({ writeErr: () => undefined });
  let flags: ManagerFlags = {};
  cmd.action((given: ManagerFlags) => {
    flags = given;
  });
  await cmd.parseAsync(args, { from: "user" });
  return managerOptions(flags, env);
}

test("switches in CUBE_* (CUBE_TLS, CUBE_INSECURE): 1, true, yes, on or 0, false, no, off in any case, empty unset; anything else a usage error naming it", async (t) => {
  const tls = async (value: string) => (await managerArgs([], { CUBE_TLS: value })).tls;
  for (const on of ["1", "true", "yes", "on", "YES", "True", " on "]) t.true(await tls(on), on);
  for (const off of ["0", "false", "no", "off", "OFF", ""]) t.false(await tls(off), off);
  t.true((await managerArgs(["--tls"], { CUBE_TLS: "0" })).tls, "the flag wins");
  t.true((await managerArgs([], { CUBE_INSECURE: "yes" })).insecure);
  t.false((await managerArgs([], {})).insecure);
  for (const [name, value] of [
    ["CUBE_TLS", "maybe"],
    ["CUBE_TLS", "y"],
    ["CUBE_INSECURE", "sure"],
    ["CUBE_METRICS", "of"],
  ] as const) {
    const refused = await t.throwsAsync(managerArgs([], { [name]: value }), {
      instanceOf: CliError,
    });
    t.is(refused?.exitCode, ExitCode.Usage, name);
    t.regex(
      refused?.message ?? "",
      new RegExp(
        `^${name}: "${value}" is neither on \\(1, true, yes, on\\) nor off \\(0, false, no, off\\)$`,
      ),
    );
  }
  t.is(parseSwitch(" On "), true);
  t.is(parseSwitch("no"), false);
  t.throws(() => parseSwitch("2"), { message: /"2" is neither on/ });
});

test("manager --node-gc-after: a duration (0 keeps them, past the timer ceiling allowed), else CUBE_NODE_GC_AFTER, else the manager's default", async (t) => {
  const gc = async (args: string[], env: NodeJS.ProcessEnv = {}) =>
    (await managerArgs(args, env)).nodeGcAfterMs;
  t.is(await gc([]), undefined, "left to the manager: 24h");
  t.is(await gc(["--node-gc-after", "48h"]), 48 * 3_600_000);
  t.is(await gc(["--node-gc-after", "0"]), 0);
  t.is(await gc(["--node-gc-after", "720h"]), 720 * 3_600_000, "an age, not a timer");
  t.is(await gc([], { CUBE_NODE_GC_AFTER: "90m" }), 90 * 60_000);
  t.is(await gc([], { CUBE_NODE_GC_AFTER: "3600000" }), 3_600_000, "bare milliseconds");
  t.is(await gc(["--node-gc-after", "2h"], { CUBE_NODE_GC_AFTER: "90m" }), 7_200_000);
  t.is((await managerArgs(["--task-gc-after", "2h"])).taskGcAfterMs, 7_200_000, "its neighbour");
  await t.throwsAsync(managerArgs(["--node-gc-after", "soon"]), { message: /is not a duration/ });
  const env = await t.throwsAsync(gc([], { CUBE_NODE_GC_AFTER: "soon" }), { instanceOf: CliError });
  t.regex(env?.message ?? "", /^CUBE_NODE_GC_AFTER: .*"soon"/);
});
