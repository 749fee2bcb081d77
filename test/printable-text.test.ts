/**
 * The one helper that keeps text from elsewhere off people's terminals as instructions
 * (lib/printable-text.ts), by named cases, and the places that use it, as pure functions:
 * the manager's intake of worker text and metrics, the redaction net, and the CLI's lines
 * and table cells. What crosses a socket is in worker-input-untrusted.test.ts and
 * cli-untrusted-text.test.ts.
 */
import { create } from "@bufbuild/protobuf";
import test from "ava";
import pc from "picocolors";
import { eventLine } from "../cli/format-event.js";
import { taskRow } from "../cli/format-task.js";
import { workerRow } from "../cli/format-worker.js";
import { TaskWaiter } from "../cli/task-waiter.js";
import {
  HealthStatus,
  TaskEventSchema,
  TaskEventType,
  TaskSchema,
  TaskSpecSchema,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import { WorkerSchema, WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { StatsSchema } from "../gen/cube/v1/worker_service_pb.js";
import { printable, printableJson } from "../lib/printable-text.js";
import { quote } from "../lib/quote.js";
import { scrubSecrets } from "../lib/redact.js";
import { WorkerEntry } from "../manager/core/worker-table.js";
import { REPORT_TEXT_LIMIT, workerItem, workerText } from "../manager/rules/task-updates.js";
import { MAX_CPU_COUNT, workerStats } from "../manager/rules/worker-stats.js";

const EVIL = "\u202eevil\u001b[1;32m health";
const SHOWN = "\\u202eevil\\u001b[1;32m health";

test("printable: named cases", (t) => {
  // Written out by hand rather than derived from the helper's sets.
  const cases: [string, string, string][] = [
    ["plain ASCII", "pulling 127.0.0.1:5000/app:1 (50%)", "pulling 127.0.0.1:5000/app:1 (50%)"],
    ["letters of every script, emoji", "é ß Ж 日本 😀", "é ß Ж 日本 😀"],
    ["the QA's report", EVIL, SHOWN],
    ["a newline, a tab, a carriage return", "a\nb\tc\rd", "a\\u000ab\\u0009c\\u000dd"],
    ["NUL and BEL", "\u0000\u0007", "\\u0000\\u0007"],
    ["OSC 0: retitle the window", "\u001b]0;pwned\u0007", "\\u001b]0;pwned\\u0007"],
    ["DEL", "a\u007fb", "a\\u007fb"],
    ["C1: NEL, and CSI in one byte", "\u0085\u009b31m", "\\u0085\\u009b31m"],
    ["the last C1 and the first printable after it", "\u009f\u00a0", "\\u009f\u00a0"],
    ["Arabic letter mark", "\u061c", "\\u061c"],
    ["left-to-right and right-to-left marks", "\u200e\u200f", "\\u200e\\u200f"],
    [
      "embeddings and overrides",
      "\u202a\u202b\u202c\u202d\u202e",
      "\\u202a\\u202b\\u202c\\u202d\\u202e",
    ],
    ["isolates", "\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"],
    ["a zero-width joiner and a non-breaking space stay", "👩\u200d💻\u00a0", "👩\u200d💻\u00a0"],
    ["empty", "", ""],
  ];
  for (const [name, input, want] of cases) t.is(printable(input), want, name);
  t.is(printable(printable(EVIL)), SHOWN, "escaping twice changes nothing more");
  const plain = "nothing to escape";
  t.is(printable(plain), plain, "the same string back");
});

test("printableJson escapes every string, keys included; numbers and the rest stay", (t) => {
  t.deepEqual(
    printableJson({
      reason: EVIL,
      labels: { [`k${EVIL}`]: "v" },
      ports: [{ hostIp: "\u202e1.2.3.4", hostPort: 8080 }],
      ok: true,
      none: null,
    }),
    {
      reason: SHOWN,
      labels: { [`k${SHOWN}`]: "v" },
      ports: [{ hostIp: "\\u202e1.2.3.4", hostPort: 8080 }],
      ok: true,
      none: null,
    },
  );
});

test("quote escapes what JSON leaves: DEL, C1 and bidirectional characters", (t) => {
  t.is(quote("a\u001bb"), '"a\\u001bb"');
  t.is(quote("a\u007f\u009b\u202eb"), '"a\\u007f\\u009b\\u202eb"');
});

test("workerText escapes, then cuts, saying so; inventory items keep escaped ids and addresses", (t) => {
  t.is(workerText(EVIL), SHOWN);
  const long = workerText("\u001b".repeat(REPORT_TEXT_LIMIT));
  t.true(long.startsWith("\\u001b\\u001b"));
  t.true(long.endsWith(`… (cut from ${REPORT_TEXT_LIMIT * 6} characters)`), long.slice(-40));
  t.is(workerText("c".repeat(200), 128).length, 128 + "… (cut from 200 characters)".length);
  const item = {
    $typeName: "cube.v1.InventoryItem" as const,
    taskId: "t",
    generation: 1n,
    state: TaskState.RUNNING,
    containerId: `c0ffee${EVIL}`,
    ports: [
      {
        $typeName: "cube.v1.PortBinding" as const,
        containerPort: 80,
        hostPort: 8080,
        protocol: 0,
        hostIp: EVIL,
      },
    ],
  };
  const kept = workerItem(item);
  t.is(kept.containerId, `c0ffee${SHOWN}`);
  t.is(kept.ports[0]?.hostIp, SHOWN);
  t.is(item.containerId, `c0ffee${EVIL}`, "the message as received is not changed");
  const clean = { ...item, containerId: "c0ffee", ports: [] };
  t.is(workerItem(clean), clean, "nothing to change: the same object");
});

test("workerStats: a worker's sample of its own node and held tasks only, numbers clamped", (t) => {
  const worker = new WorkerEntry(
    create(WorkerSchema, { id: "wa", capacity: { cpu: 3.5 } }),
    0n,
    WorkerStatus.READY,
  );
  worker.reserve("mine", { cpu: 0, memoryBytes: 0n, diskBytes: 0n });
  const stats = (node: object, tasks: object[]) =>
    create(StatsSchema, { node, tasks } as Parameters<typeof create<typeof StatsSchema>>[1]);
  const cases: [string, ReturnType<typeof stats>, unknown][] = [
    ["no node part: nothing kept", create(StatsSchema, { tasks: [{ taskId: "mine" }] }), undefined],
    [
      "another worker's name, odd numbers",
      stats(
        {
          workerId: "wb",
          cpuCount: 4,
          cpuPercent: 250,
          load1: Number.NaN,
          load5: -1,
          load15: 1e9,
        },
        [],
      ),
      ["wa", 4, 100, 0, 0, 4000, []],
    ],
    [
      "more CPUs than Linux has",
      stats({ cpuCount: 2 ** 31, cpuPercent: 5 }, []),
      ["wa", MAX_CPU_COUNT, 5, 0, 0, 0, []],
    ],
    [
      "tasks: held only, once each (the last), in its name; cpu capped by its declared 3.5 cores",
      stats({ cpuCount: 0 }, [
        { taskId: "mine", workerId: "wa", cpuPercent: 1 },
        { taskId: "theirs", workerId: "wb", cpuPercent: 1 },
        { taskId: "mine", workerId: "wb", containerId: EVIL, cpuPercent: 1e6 },
        { taskId: "", cpuPercent: 1 },
      ]),
      ["wa", 0, 0, 0, 0, 0, [["mine", "wa", SHOWN, 400]]],
    ],
    [
      "a task's negative or NaN cpu is 0",
      stats({ cpuCount: 8 }, [{ taskId: "mine", cpuPercent: Number.NEGATIVE_INFINITY }]),
      ["wa", 8, 0, 0, 0, 0, [["mine", "wa", "", 0]]],
    ],
  ];
  for (const [name, sample, want] of cases) {
    const kept = workerStats(worker, sample);
    const got = kept && [
      kept.node.workerId,
      kept.node.cpuCount,
      kept.node.cpuPercent,
      kept.node.load1,
      kept.node.load5,
      kept.node.load15,
      kept.tasks.map((x) => [x.taskId, x.workerId, x.containerId, x.cpuPercent]),
    ];
    t.deepEqual(got, want, name);
  }
});

test("scrubSecrets finds a secret value in a worker's text as the manager escaped it", (t) => {
  const spec = create(TaskSpecSchema, { image: "x", secretEnv: { PW: "pa\u001bss\u202eword" } });
  const reported = printable('engine said: "PW=pa\u001bss\u202eword"');
  t.is(scrubSecrets(reported, spec), 'engine said: "PW=<redacted>"');
});

test("the CLI's cells and lines escape the manager's text, and keep their own colours", (t) => {
  const colors = pc.createColors(true);
  const task = create(TaskSchema, {
    id: `t${EVIL}`,
    spec: { name: EVIL, image: EVIL },
    state: TaskState.RUNNING,
    health: HealthStatus.UNHEALTHY,
    workerId: "w1",
    reason: EVIL,
  });
  const row = taskRow(task, { now: 0, colors, workerNames: new Map([["w1", EVIL]]) });
  t.is(row[1], SHOWN, "NAME");
  t.is(row[3], SHOWN, "WORKER");
  t.is(row[4], SHOWN, "IMAGE");
  t.true(row[2]?.includes(colors.green("RUNNING")), "its own colour");
  const worker = workerRow(create(WorkerSchema, { id: "w1", name: EVIL }), { now: 0, colors });
  t.is(worker[0], SHOWN);
  const event = create(TaskEventSchema, {
    revision: 7n,
    type: TaskEventType.STATE_CHANGED,
    task,
    message: EVIL,
  });
  const line = eventLine(event, colors, true);
  t.true(line.endsWith(`t${SHOWN}  ${SHOWN}  RUNNING: ${SHOWN}`), line);
  t.true(line.includes(colors.dim("#7")), "its own colour");

  const waiter = new TaskWaiter({ startedAt: 0 });
  const step = waiter.event(
    create(TaskEventSchema, {
      type: TaskEventType.PROGRESS,
      task: { ...task, state: TaskState.SCHEDULED },
      message: EVIL,
    }),
    1000,
  );
  t.is(step.progress, `   1.0s  ${SHOWN}`);
  t.true(step.lines[0]?.endsWith(SHOWN), step.lines[0]);
  const failed = waiter.event(
    create(TaskEventSchema, {
      type: TaskEventType.STATE_CHANGED,
      task: { ...task, state: TaskState.FAILED },
    }),
    2000,
  );
  t.true(failed.outcome?.message.endsWith(`FAILED: ${SHOWN}`), failed.outcome?.message);
});
