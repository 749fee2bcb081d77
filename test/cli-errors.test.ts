/**
 * `cube` without a cluster: help, usage errors and an unreachable manager, each with its
 * documented exit code and no stack trace. Help and usage run the CLI in this process
 * (runCli, as bin/cube.js does); the rest runs the executable.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { givenSetting } from "../cli/client.js";
import { eventTypeName } from "../cli/format-event.js";
import { runCli } from "../cli/run-cli.js";
import { TaskEventType } from "../gen/cube/v1/task_pb.js";
import { captureIo, cube, freePort } from "./cli-harness.js";

/** Runs `cube args…` in this process (with `env` as its environment). */
async function inProcess(args: string[], env: NodeJS.ProcessEnv = {}) {
  const io = captureIo(env);
  const code = await runCli(args, io);
  return { code, stdout: io.out(), stderr: io.err() };
}

const COMMANDS = [
  "dev",
  "manager",
  "worker",
  "run",
  "ps",
  "inspect",
  "stop",
  "logs",
  "nodes",
  "events",
  "job",
  "node",
  "version",
];

test.serial("cube --help lists every command and the exit codes", async (t) => {
  const r = await cube(["--help"]);
  t.is(r.code, 0);
  for (const name of COMMANDS) t.regex(r.stdout, new RegExp(`^  ${name}\\b`, "m"), name);
  t.regex(r.stdout, /Exit codes:/);
  t.regex(r.stdout, /5 {2}the manager cannot be reached/);
});

test.serial("each command's --help has examples", async (t) => {
  const results = await Promise.all(COMMANDS.map((name) => inProcess([name, "--help"])));
  for (const [i, r] of results.entries()) {
    t.is(r.code, 0, COMMANDS[i]);
    t.regex(r.stdout, /Examples:\n {2}cube /, COMMANDS[i]);
  }
  t.regex((await inProcess(["status", "--help"])).stdout, /Usage: cube ps\|status/);
  t.regex((await inProcess(["logs", "--help"])).stdout, /--tail <lines> .*\(N at least 1\)/);
  t.regex((await inProcess(["run", "--help"])).stdout, /--max-restarts <n> .*1 or more/);
  t.regex((await inProcess(["run", "--help"])).stdout, /-p, --port <\[HOST_IP:\]\[HOST:\]/);
  const ps = (await inProcess(["ps", "--help"])).stdout.replace(/\s+/g, " ");
  t.regex(ps, /--state <states> only tasks in these states \([^)]*failed, unknown;/);
  // --disk is counted when placing, never enforced: the help must not let it pass for a quota.
  const run = (await inProcess(["run", "--help"])).stdout.replace(/\s+/g, " ");
  t.regex(
    run,
    /--disk <size> disk for placement only, not enforced: .*nothing stops the container writing more/,
  );
  t.regex(run, /--disk is a scheduling figure only, like Nomad's ephemeral_disk/);
});

test("events --help names every event type the lines show", async (t) => {
  const help = (await inProcess(["events", "--help"])).stdout.replace(/\s+/g, " ");
  const listed = /type \(([^)]*)\)/.exec(help)?.[1]?.split(", ") ?? [];
  const types = Object.values(TaskEventType).filter(
    (v): v is TaskEventType => typeof v === "number" && v !== TaskEventType.UNSPECIFIED,
  );
  t.deepEqual(
    listed,
    types.map((type) => eventTypeName(type)),
  );
  t.false(listed.includes("unknown"));
});

test.serial(
  "--help shows duration defaults as the flag takes them, not in milliseconds",
  async (t) => {
    const cases: [string[], string][] = [
      [["run"], "2m"],
      [["stop"], "1m"],
      [["job", "run"], "10m"],
      [["job", "revert"], "10m"],
    ];
    for (const [args, shown] of cases) {
      // Help wraps its columns: read it as one line.
      const help = (await inProcess([...args, "--help"])).stdout.replace(/\s+/g, " ");
      t.regex(
        help,
        new RegExp(`--timeout <duration> [^()]*\\(default: ${shown}\\)`),
        args.join(" "),
      );
      t.notRegex(help, /\(default: \d{4,}\)/, args.join(" "));
    }
  },
);

test.serial("a usage error names the help of the command it is in, sub-commands too", async (t) => {
  const cases: [string[], string][] = [
    [["job", "run"], "(see `cube job run --help`)"],
    [["token", "create"], "(see `cube token create --help`)"],
    [["node", "drain"], "(see `cube node drain --help`)"],
    [["ps", "--frob"], "(see `cube ps --help`)"],
    [["--frob"], "(see `cube --help`)"],
  ];
  for (const [args, hint] of cases) {
    const r = await inProcess(args);
    t.is(r.code, 2, args.join(" "));
    t.true(r.stderr.endsWith(`${hint}\n`), `${args.join(" ")}: ${r.stderr}`);
  }
});

test.serial("an unreachable manager is one line naming the address, exit 5", async (t) => {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const expected = `cube: cannot reach the manager at ${address} — start one with \`cube dev\` or \`cube manager\`, or set --manager/CUBE_MANAGER\n`;
  const [ps, status, run, inspect] = await Promise.all([
    cube(["ps", "--manager", address]),
    cube(["status"], { env: { ...process.env, CUBE_MANAGER: address } }),
    cube(["run", "cube/httpd:local", "--manager", address]),
    cube(["inspect", "abc", "--manager", address]),
  ]);
  for (const r of [ps, status, run, inspect]) {
    t.is(r.code, 5);
    t.is(r.stderr, expected);
    t.is(r.stdout, "");
  }
  const version = await cube(["version", "--manager", address]);
  t.is(version.code, 5);
  t.regex(version.stdout, /^client: {2}cube \d+\.\d+\.\d+\nmanager: .* does not answer\n$/);
});

test.serial("bad flags and values are usage errors, exit 2, without a stack trace", async (t) => {
  const cases: [string[], RegExp][] = [
    [["run", "img", "--memory", "12X"], /'12X' is invalid\. "12X" is not a size/],
    [["run", "img", "--port", "http"], /"http" is not a port/],
    [["run", "img", "--restart", "sometimes"], /not a restart policy/],
    [["run", "img", "--timeout", "30"], /is not a duration/],
    [["run"], /missing IMAGE/],
    [["run", "img", "--health-path", "/health"], /--health-path needs a --port/],
    [["run", "img", "-f", "task.yaml"], /-f cannot be combined with IMAGE/],
    [["run", "-f", "/nonexistent/task.yaml"], /cannot read \/nonexistent\/task\.yaml: ENOENT/],
    [["run", "-f", "/dev/zero"], /\/dev\/zero: larger than 4 MiB: not a task or job file/],
    [["job", "run", "-f", "/dev/zero"], /\/dev\/zero: larger than 4 MiB: not a task or job file/],
    [["job", "run", "-f", "/nonexistent/job.yaml"], /cannot read \/nonexistent\/job\.yaml: ENOENT/],
    [["run", "img", "--count", "0"], /"0" is not a whole number between 1 and 5000/],
    [["run", "img", "--count", "5001"], /"5001" is not a whole number between 1 and 5000/],
    [["run", "img", "--count", "many"], /"many" is not a whole number/],
    [["run", "img", "--count", "3", "--wait"], /--wait follows one task: not with --count/],
    [["ps", "--state", "sleeping"], /"sleeping" is not a task state/],
    // 0 would give up at once, where 0 elsewhere waits for ever: refused.
    [
      ["run", "img", "--wait", "--timeout", "0"],
      /0 would give up at once: give a duration above 0/,
    ],
    [["stop", "web", "--wait", "--timeout", "0s"], /0 would give up at once/],
    [["job", "run", "-f", "j.yaml", "--timeout", "0"], /0 would give up at once/],
    // An unset variable in --id "$ID" would pick a random id.
    [["run", "img", "--id", ""], /--id is empty: give an id or leave it out/],
    [["ps", "--json", "-o", "table"], /--json cannot be combined with -o table/],
    [["job", "ls", "-o", "table", "--json"], /--json cannot be combined with -o table/],
    // A time, only before the epoch (Date.UTC reads years before 100 as 19xx).
    [
      ["logs", "web", "--since", "0001-01-01T00:00:00Z"],
      /"0001-01-01T00:00:00Z": -62135596800 s is before 1970-01-01T00:00:00Z/,
    ],
    [["ps", "-o", "yaml"], /Allowed choices are table, json/],
    [["inspect"], /missing required argument 'task'/],
    // Past what the request can carry: the call could only fail (it looped reconnecting).
    [
      ["events", "--since", "18446744073709551616"],
      /revision must be at most 18446744073709551615/,
    ],
    [["run", "img", "--memory", "99999999999999999999999"], /is out of range: a size is at most/],
    [["run", "img", "--disk", "99999999Pi"], /is out of range: a size is at most/],
    [["job", "scale", "web", "10001"], /"10001" is not a whole number between 0 and 10000/],
    [["job", "scale", "web", "99999999999"], /is not a whole number between 0 and 10000/],
    // An empty reference would match every task (an unset shell variable: `cube stop "$ID"`).
    [["inspect", ""], /a task id or name is required/],
    [["stop", "web", ""], /a task id or name is required/],
    [["stop", " "], /a task id or name is required/],
    [["logs", ""], /a task id or name is required/],
    [["events", "--task", ""], /a task id or name is required/],
    [["ps", "--worker", ""], /--worker must not be empty/],
    [["ps", "--name", " "], /--name must not be empty/],
    [["frobnicate"], /unknown command 'frobnicate'/],
    [["ps", "--frob"], /unknown option '--frob'/],
    [["manager", "--heartbeat-interval", "fast"], /is not a duration/],
    [["manager", "--startup-grace", "soon"], /is not a duration/],
    [["manager", "--shutdown-timeout", "soon"], /is not a duration/],
    [["manager", "--task-gc-after", "soon"], /is not a duration/],
    [["manager", "--node-gc-after", "soon"], /is not a duration/],
    [["worker", "--shutdown-timeout", "soon"], /is not a duration/],
    // Start-up settings, named as typed, before anything starts (they were exit 1).
    [
      ["manager", "--heartbeat-timeout", "0s"],
      /--heartbeat-timeout \(0ms\) must exceed --heartbeat-interval \(500ms\)/,
    ],
    [["manager", "--heartbeat-interval", "0s"], /--heartbeat-interval must be above 0/],
    [["manager", "--assignment-resend", "0s"], /--assignment-resend must be above 0/],
    [
      ["manager", "--listen", "127.0.0.1:99999"],
      /--listen "127\.0\.0\.1:99999": port must be 1-65535/,
    ],
    [["dev", "--listen", "127.0.0.1:99999"], /port must be 1-65535/],
    [["worker", "--listen", "127.0.0.1:70000"], /port must be 1-65535/],
    [["dev", "--log-level", "bogus"], /"bogus" is not a log level: use fatal, error, warn, info/],
    // Docker refuses it only when a container is created: every task would fail.
    [["worker", "--cap-drop", "NOT_A_CAP"], /"NOT_A_CAP" is not a Linux capability/],
    [["worker", "--cap-drop", "CAP_ALL"], /"CAP_ALL" is not a Linux capability/],
    [["worker", "--pull-stall-timeout", "soon"], /is not a duration/],
    [["worker", "--warm-sandboxes", "65"], /"65" is not a whole number between 0 and 64/],
    [["manager", "--assignment-window", "0"], /is not a whole number between 1 and/],
    [["run", "img", "--wait", "--timeout", "600h"], /"600h" is too long: at most 596h31m23s/],
    [["job", "run", "-f", "j.yaml", "--timeout", "1000h"], /"1000h" is too long/],
    [["node", "drain", "w1", "--deadline", "1000h"], /"1000h" is too long/],
    // The API reads tail 0 as the whole log, max_restarts 0 as the default of 3.
    [["logs", "web", "--tail", "0"], /reads tail 0 as all lines\): give 1 or more/],
    [["logs", "web", "-n", "-1"], /"-1" is not a whole number between 1 and/],
    [["run", "img", "--max-restarts", "0"], /give 1 or more, or use --restart never/],
    [
      ["ps", "--manager", "127.0.0.1:99999"],
      /"127\.0\.0\.1:99999" is not a manager address: port 99999 is out of range \(1-65535\)/,
    ],
  ];
  const results = await Promise.all(cases.map(([args]) => inProcess(args)));
  for (const [i, r] of results.entries()) {
    const [args, pattern] = cases[i] as [string[], RegExp];
    t.is(r.code, 2, args.join(" "));
    t.regex(r.stderr, pattern, args.join(" "));
    t.notRegex(r.stderr, /\n\s+at /, `${args.join(" ")}: no stack trace`);
  }
});

test.serial(
  "an empty --token, --manager or --ca (or CUBE_*) is a usage error, never a fall back",
  async (t) => {
    // The config file's token would be the admin one: `--token "$RO_TOKEN"` with RO_TOKEN unset
    // must not run with it.
    const config = { CUBE_CONFIG: "/nonexistent/cube-config.json" };
    const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
      [["stop", "web", "--token", ""], {}, /--token is empty/],
      [["ps", "--token", " "], {}, /--token is empty/],
      [["ps"], { CUBE_TOKEN: "" }, /CUBE_TOKEN is set but empty/],
      [["ps", "--manager", ""], {}, /--manager is empty/],
      [["ps"], { CUBE_MANAGER: "" }, /CUBE_MANAGER is set but empty/],
      [["ps", "--ca", ""], {}, /--ca is empty/],
      [["inspect", "web"], { CUBE_CA: "" }, /CUBE_CA is set but empty/],
      [["worker", "--token", ""], {}, /--token is empty/],
      [["worker"], { CUBE_TOKEN: "" }, /CUBE_TOKEN is set but empty/],
      [["worker", "--manager", ""], {}, /--manager is empty/],
      [["worker", "--ca", ""], {}, /--ca is empty/],
    ];
    for (const [args, env, pattern] of cases) {
      const r = await inProcess(args, { ...config, ...env });
      const what = `${args.join(" ")} ${JSON.stringify(env)}`;
      t.is(r.code, 2, what);
      t.regex(r.stderr, pattern, what);
    }
    // A flag given wins over an empty variable.
    t.is(givenSetting("t0k", "--token", { CUBE_TOKEN: "" }, "CUBE_TOKEN"), "t0k");
    t.is(givenSetting(undefined, "--token", {}, "CUBE_TOKEN"), undefined);
  },
);

test.serial("worker: CUBE_CAP_DROP is checked at start-up as --cap-drop is", async (t) => {
  const r = await inProcess(["worker"], { CUBE_CAP_DROP: "NET_RAW,bogus" });
  t.is(r.code, 2);
  t.regex(r.stderr, /CUBE_CAP_DROP: "bogus" is not a Linux capability/);
});

test.serial("start-up settings from CUBE_* are named as such, exit 2", async (t) => {
  const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
    [
      ["manager"],
      { CUBE_HEARTBEAT_INTERVAL: "3s" },
      /--heartbeat-timeout \(2s\) must exceed CUBE_HEARTBEAT_INTERVAL \(3s\)/,
    ],
    [["manager"], { CUBE_LOG_LEVEL: "bogus" }, /CUBE_LOG_LEVEL: "bogus" is not a log level/],
    [["dev"], { CUBE_LOG_LEVEL: "loud" }, /CUBE_LOG_LEVEL: "loud" is not a log level/],
    [
      ["manager"],
      { CUBE_LISTEN: "127.0.0.1:99999" },
      /CUBE_LISTEN "127\.0\.0\.1:99999": port must be/,
    ],
    // A switch that is neither on nor off (CUBE_TLS=ye started plaintext in silence).
    [["manager"], { CUBE_TLS: "ye" }, /^cube: CUBE_TLS: "ye" is neither on \(1, true, yes, on\)/],
    [["dev"], { CUBE_TLS: "enable" }, /^cube: CUBE_TLS: "enable" is neither on/],
    [["manager"], { CUBE_INSECURE: "sure" }, /^cube: CUBE_INSECURE: "sure" is neither on/],
    [["worker"], { CUBE_INSECURE: "sure" }, /^cube: CUBE_INSECURE: "sure" is neither on/],
    [["dev"], { CUBE_METRICS: "of" }, /^cube: CUBE_METRICS: "of" is neither on/],
    [
      ["worker"],
      { CUBE_ALLOW_NEW_PRIVILEGES: "si" },
      /^cube: CUBE_ALLOW_NEW_PRIVILEGES: "si" is neither on/,
    ],
    [["ps"], { CUBE_DEBUG: "verbose" }, /^cube: CUBE_DEBUG: "verbose" is neither on/],
  ];
  for (const [args, env, pattern] of cases) {
    const r = await inProcess(args, env);
    t.is(r.code, 2, JSON.stringify(env));
    t.regex(r.stderr, pattern, JSON.stringify(env));
  }
});

test.serial("cube manager on a port in use says so and leaves no tokens behind", async (t) => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
  const { port } = taken.address() as AddressInfo;
  const dataDir = await mkdtemp(join(tmpdir(), "cube-inuse-"));
  try {
    const r = await inProcess(["manager", "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir]);
    t.is(r.code, 1);
    t.regex(r.stderr, /127\.0\.0\.1:\d+ is in use: choose another with --listen/);
    t.deepEqual(await readdir(dataDir), []);
  } finally {
    taken.close();
    await rm(dataDir, { recursive: true, force: true });
  }
});
