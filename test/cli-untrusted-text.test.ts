/**
 * `cube` prints no terminal instruction it did not write itself (kubectl's CVE-2021-25743):
 * against a manager that answers text with escape sequences and bidirectional overrides in it
 * (an older manager stored a worker's report as it came), `cube inspect`, `cube events` and
 * `cube ps` show those characters escaped, their own colours intact, while `-o json` stays
 * the exact JSON. The manager is a real server on a real socket, answering canned tasks;
 * the CLI runs in this process (runCli, as bin/cube.js does).
 */
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import test from "ava";
import { runCli } from "../cli/run-cli.js";
import {
  HealthStatus,
  Protocol,
  type Task,
  TaskEventSchema,
  TaskEventType,
  TaskSchema,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import { BIDI_CHARACTERS, CONTROL_CHARACTERS } from "../lib/printable-text.js";
import { captureIo } from "./cli-harness.js";
import { serveTaskService, tempDir } from "./fixtures.js";

/** The QA's report: a right-to-left override, then an escape sequence that paints green. */
const EVIL = "\u202eevil\u001b[1;32m health";
const SHOWN = "\\u202eevil\\u001b[1;32m health";
/** A name that retitles the terminal window (OSC 0), as an older manager may hold one. */
const NAME = "web\u001b]0;pwned\u0007";

/** Control and bidirectional characters (lib/printable-text.ts's sets), every one. */
const UNSAFE = new RegExp(`${CONTROL_CHARACTERS.source}|${BIDI_CHARACTERS.source}`, "g");
/** The colour codes `cube` writes itself (SGR). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: they start with ESC
const SGR = /\u001b\[[0-9;]*m/g;

/**
 * What the CLI wrote that a terminal would take as an instruction or a reordering: any
 * control or bidirectional character but the newlines ending lines (and, when colours were
 * asked for, but SGR colour codes).
 */
function instructions(text: string, allowColours = false): string[] {
  const plain = (allowColours ? text.replace(SGR, "") : text).replaceAll("\n", "");
  return [...plain.matchAll(UNSAFE)].map((m) => JSON.stringify(m[0]));
}

const NOW = Date.now();

const TASK: Task = create(TaskSchema, {
  id: "3f2a9c01d4e5aa",
  spec: { name: NAME, image: `cube/httpd:local${EVIL}` },
  state: TaskState.RUNNING,
  health: HealthStatus.UNHEALTHY,
  workerId: `w1${EVIL}`,
  containerId: `c0ffee${EVIL}`,
  ports: [{ containerPort: 80, hostPort: 8080, protocol: Protocol.TCP, hostIp: EVIL }],
  reason: EVIL,
  generation: 1n,
  revision: 3n,
  createdAt: timestampFromMs(NOW - 60_000),
});

const EVENTS = [
  create(TaskEventSchema, {
    revision: 2n,
    type: TaskEventType.PROGRESS,
    time: timestampFromMs(NOW - 30_000),
    task: TASK,
    message: `pulling ${EVIL}`,
  }),
  create(TaskEventSchema, {
    revision: 3n,
    type: TaskEventType.HEALTH_CHANGED,
    time: timestampFromMs(NOW - 1000),
    task: TASK,
    message: EVIL,
  }),
];

/** A manager that answers these canned tasks and events, as one built before escaping did. */
async function olderManager(t: Parameters<typeof serveTaskService>[0]): Promise<string> {
  const server = await serveTaskService(t, {
    getTask: () => ({ task: TASK }),
    listTasks: () => ({ tasks: [TASK], revision: 3n }),
    listTaskEvents: () => ({ events: EVENTS }),
    async *watchTasks(_req, ctx) {
      for (const event of EVENTS) yield { event };
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
    },
  });
  return server.address;
}

/** `cube args… --manager address` in this process; Ctrl-C once `done` says so (or after 10 s). */
async function run(
  t: Parameters<typeof tempDir>[0],
  args: string[],
  env: NodeJS.ProcessEnv = {},
  done?: (stdout: string) => boolean,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const interrupt = new AbortController();
  const io = {
    ...captureIo({ CUBE_CONFIG: join(await tempDir(t), "config.json"), ...env }),
    interrupted: interrupt.signal,
  };
  const timer = setTimeout(() => interrupt.abort(), 10_000);
  const watcher = done
    ? setInterval(() => {
        if (done(io.out())) interrupt.abort();
      }, 20)
    : undefined;
  try {
    const code = await runCli(args, io);
    return { code, stdout: io.out(), stderr: io.err() };
  } finally {
    clearTimeout(timer);
    clearInterval(watcher);
  }
}

test("cube inspect shows a worker's escape sequences and overrides escaped; -o json stays exact", async (t) => {
  const address = await olderManager(t);
  const human = await run(t, ["inspect", TASK.id, "--manager", address]);
  t.is(human.code, 0, human.stderr);
  t.deepEqual(instructions(human.stdout), [], human.stdout);
  t.true(human.stdout.includes(`reason: ${SHOWN}`), human.stdout);
  t.true(human.stdout.includes(`hostIp: ${SHOWN}`), human.stdout);
  t.true(human.stdout.includes("web\\u001b]0;pwned\\u0007"), human.stdout);
  t.true(human.stdout.includes(`unhealthy: ${SHOWN}`), human.stdout);
  t.true(human.stdout.includes(`pulling ${SHOWN}`), human.stdout);

  const json = await run(t, ["inspect", TASK.id, "--manager", address, "-o", "json"]);
  t.is(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as {
    task: { reason: string; spec: { name: string } };
    events: { message: string }[];
  };
  t.is(parsed.task.reason, EVIL, "the exact text, JSON-escaped");
  t.is(parsed.task.spec.name, NAME);
  t.deepEqual(
    parsed.events.map((e) => e.message),
    [`pulling ${EVIL}`, EVIL],
  );
  t.false(json.stdout.includes("\u001b"), "JSON escapes control characters");
});

test("cube events and cube ps escape them too, and keep their own colours", async (t) => {
  const address = await olderManager(t);
  const events = await run(t, ["events", "--since", "0", "--manager", address], {}, (out) =>
    out.includes("#3"),
  );
  t.deepEqual(instructions(events.stdout), [], events.stdout);
  const lines = events.stdout.trimEnd().split("\n");
  t.is(lines.length, 2, events.stdout);
  t.regex(lines[0] ?? "", /#2 {2}progress {2}3f2a9c01d4e5 {2}web\\u001b\]0;pwned\\u0007 {2}/);
  t.true(lines[0]?.endsWith(`pulling ${SHOWN}`), lines[0]);
  t.true(lines[1]?.endsWith(`unhealthy: ${SHOWN}`), lines[1]);

  for (const env of [{}, { FORCE_COLOR: "1" }]) {
    const ps = await run(t, ["ps", "--manager", address], env);
    t.is(ps.code, 0, ps.stderr);
    const coloured = "FORCE_COLOR" in env;
    t.deepEqual(instructions(ps.stdout, coloured), [], ps.stdout);
    t.true(ps.stdout.includes("web\\u001b]0;pwned\\u0007"), ps.stdout);
    t.true(ps.stdout.includes(`cube/httpd:local${SHOWN}`), ps.stdout);
    t.true(ps.stdout.includes(`${SHOWN}:8080->80/tcp`), ps.stdout);
    // Its own colour codes are still there when asked for: RUNNING in green.
    t.is(ps.stdout.includes("\u001b[32mRUNNING"), coloured, ps.stdout);
  }
});
