/**
 * TaskLogs' times and `since`, and `cube logs --since`, against real processes (a manager and
 * a worker: manager/main.ts, worker/main.ts) and the real Docker engine: a container prints a
 * numbered line every 100 ms. Each chunk is one line stamped with the time the container
 * wrote it (the same every time it is read); `since` returns what was written at or after
 * it, to the nanosecond; a bad `since` is INVALID_ARGUMENT, exit 2 for the CLI. And what
 * TaskLogs answers for a task that ended.
 */
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { type Client, Code, createClient } from "@connectrpc/connect";
import test from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import {
  LogStream,
  type TaskLogsRequest,
  type TaskLogsResponse,
  TaskService,
} from "../gen/cube/v1/task_service_pb.js";
import { formatRfc3339Nano, timestampToMs } from "../lib/log-time.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { cube } from "./cli-harness.js";
import { errorOf } from "./error-of.js";
import { requireDocker, tempDir } from "./fixtures.js";
import { eventually, spec } from "./manager-harness.js";
import { Cluster, type Spawned } from "./manager-process.js";

const LONG = 60_000;

/** Prints "line 0", "line 1"… every 100 ms, for good. */
const COUNTER = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done";

type Tasks = Client<typeof TaskService>;

/** Every chunk of one TaskLogs call (not followed, unless a test says). */
async function read(
  tasks: Tasks,
  request: Partial<Omit<TaskLogsRequest, "$typeName">>,
): Promise<TaskLogsResponse[]> {
  const chunks: TaskLogsResponse[] = [];
  for await (const chunk of tasks.taskLogs(request)) chunks.push(chunk);
  return chunks;
}

const text = (c: TaskLogsResponse) => Buffer.from(c.data).toString();
const numberOf = (line: string) => Number(/^line (\d+)\n?$/.exec(line)?.[1] ?? Number.NaN);

/** A manager, a worker and the counter task; resolves once it has printed `lines` lines. */
async function counter(
  t: { teardown(fn: () => unknown): void; log(...values: unknown[]): void },
  lines: number,
): Promise<{ m: Spawned; tasks: Tasks; id: string; submittedMs: number }> {
  await requireDocker();
  const cluster = new Cluster(t, await tempDir(t));
  const m = await cluster.startManager();
  await cluster.startWorker("w1");
  const tasks = createClient(TaskService, grpcTransport(m.address, { token: m.token }));
  const submittedMs = Date.now();
  const { task } = await tasks.runTask({
    spec: spec({ name: "counter", command: ["sh", "-c", COUNTER] }),
  });
  const id = task?.id as string;
  for (const deadline = Date.now() + LONG; ; ) {
    try {
      if ((await read(tasks, { id })).length >= lines) break;
    } catch (error) {
      // Until the container runs: "no container yet".
      if (Date.now() > deadline) throw error;
    }
    if (Date.now() > deadline) throw new Error(`fewer than ${lines} lines in ${LONG} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return { m, tasks, id, submittedMs };
}

const plus = (ts: Timestamp, nanos: number): Timestamp => {
  const total = ts.nanos + nanos;
  const carry = Math.floor(total / 1e9);
  return { ...ts, seconds: ts.seconds + BigInt(carry), nanos: total - carry * 1e9 };
};

test.serial(
  "each chunk is one line stamped with the time the container wrote it: in order, 100 ms apart, before the read, the same on every read; since returns what was written at or after it, to the nanosecond",
  async (t) => {
    const { m, tasks, id, submittedMs } = await counter(t, 25);
    const chunks = await read(tasks, { id });
    const readMs = Date.now();
    t.true(chunks.length >= 25);
    t.deepEqual(
      chunks.map(text),
      chunks.map((_, i) => `line ${i}\n`),
      "one line a chunk, in order",
    );
    t.true(chunks.every((c) => c.stream === LogStream.STDOUT && c.time !== undefined));
    const ms = chunks.map((c) => timestampToMs(c.time as Timestamp));
    for (let i = 1; i < ms.length; i++) {
      t.true((ms[i] as number) >= (ms[i - 1] as number), `line ${i} stamped before line ${i - 1}`);
    }
    // Written before they were read, after the task was submitted (one host clock).
    t.true((ms[0] as number) >= submittedMs - 1000, `${ms[0]} vs ${submittedMs}`);
    t.true((ms.at(-1) as number) <= readMs, `${ms.at(-1)} vs ${readMs}`);
    // Written about 100 ms apart, where a read stamps them all within a few ms.
    const span = (ms[20] as number) - (ms[0] as number);
    t.true(span >= 1500, `lines 0 to 20 written within ${span} ms`);
    // Read again: the same stamps (what a resume counts on).
    const again = await read(tasks, { id });
    t.deepEqual(
      again.slice(0, chunks.length).map((c) => formatRfc3339Nano(c.time as Timestamp)),
      chunks.map((c) => formatRfc3339Nano(c.time as Timestamp)),
    );

    // since = the stamp of line 10, exactly: line 10 is in (at or after); one ns later: not.
    const ten = chunks[10]?.time as Timestamp;
    const fromTen = await read(tasks, { id, since: ten });
    t.is(text(fromTen[0] as TaskLogsResponse), "line 10\n");
    t.deepEqual(fromTen[0]?.time, ten);
    t.deepEqual(
      fromTen.map((c) => numberOf(text(c))),
      fromTen.map((_, i) => 10 + i),
      "from line 10 on, none missing",
    );
    const afterTen = await read(tasks, { id, since: plus(ten, 1) });
    t.is(text(afterTen[0] as TaskLogsResponse), "line 11\n");
    // With tail: the last N of those.
    const last3 = await read(tasks, { id, since: ten, tail: 3 });
    t.is(last3.length, 3);
    const n = last3.map((c) => numberOf(text(c)));
    t.deepEqual(n, [n[0], (n[0] as number) + 1, (n[0] as number) + 2]);
    // The last 3, not the first 3 after line 10: they end at the last line read before, or
    // later (the counter may or may not have written another line since).
    t.true((n[2] as number) >= chunks.length - 1, `${n} after ${chunks.length} lines`);
    // Followed from a time: what was written since, then on.
    const abort = new AbortController();
    const followed: string[] = [];
    const upTo = chunks.length + 5;
    try {
      for await (const c of tasks.taskLogs(
        { id, follow: true, since: chunks[20]?.time },
        { signal: abort.signal },
      )) {
        followed.push(text(c));
        if (numberOf(text(c)) >= upTo) abort.abort();
      }
    } catch (error) {
      if (!abort.signal.aborted) throw error;
    }
    t.deepEqual(
      followed.map(numberOf),
      followed.map((_, i) => 20 + i),
    );

    // The CLI: --since a time between lines 9 and 10 (as RFC 3339 with nanoseconds).
    const nine = timestampToMs(chunks[9]?.time as Timestamp);
    const between = plus(
      chunks[9]?.time as Timestamp,
      Math.floor(((timestampToMs(ten) - nine) * 1e6) / 2),
    );
    const auth = ["--manager", m.address, "--token", m.token ?? ""];
    const since = await cube(["logs", "--since", formatRfc3339Nano(between), id, ...auth]);
    t.is(since.code, 0, since.stderr);
    const printed = since.stdout.split("\n").filter((l) => l !== "");
    t.is(printed[0], "line 10");
    t.deepEqual(
      printed.map((l) => numberOf(l)),
      printed.map((_, i) => 10 + i),
    );
    // A duration back from now: an hour covers it all; with --tail, the last lines of it.
    const hour = await cube(["logs", "--since", "1h", id, ...auth]);
    t.is(hour.code, 0, hour.stderr);
    t.true(hour.stdout.startsWith("line 0\nline 1\n"), hour.stdout.slice(0, 100));
    const json = await cube(["logs", "--since", "1h", "--tail", "2", id, "-o", "json", ...auth]);
    const endedAt = Date.now();
    t.is(json.code, 0, json.stderr);
    const lines = json.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { data: string; time: string });
    t.is(lines.length, 2);
    // Two consecutive lines, their JSON times in order and before the command ended (that
    // they are write times, not read times, is the span checked above; how far apart two
    // come depends on when the engine read the pipe, which load can delay).
    const numbered = lines.map((l) => Number(/line (\d+)/.exec(atob(l.data))?.[1]));
    t.is(numbered[1], (numbered[0] as number) + 1, JSON.stringify(lines));
    const [a, b] = lines.map((l) => Date.parse(l.time)) as [number, number];
    t.true(a <= b && b <= endedAt, `${JSON.stringify(lines)}, ended at ${endedAt}`);
  },
);

test.serial(
  "a bad since is INVALID_ARGUMENT (before 1970, bad nanos: the manager; in the future: the worker) and exit 2 for cube logs --since",
  async (t) => {
    const { m, tasks, id } = await counter(t, 1);
    const ts = (seconds: bigint, nanos = 0): Timestamp => ({
      $typeName: "google.protobuf.Timestamp",
      seconds,
      nanos,
    });
    const negative = await errorOf(read(tasks, { id, since: ts(-1n) }));
    t.is(negative.code, Code.InvalidArgument);
    t.regex(negative.rawMessage, /^since: -1 s is before 1970-01-01T00:00:00Z/);
    const nanos = await errorOf(read(tasks, { id, since: ts(1n, 1_000_000_000) }));
    t.is(nanos.code, Code.InvalidArgument);
    t.regex(nanos.rawMessage, /nanos must be 0 to 999999999/);
    const later = BigInt(Math.floor(Date.now() / 1000) + 3600);
    const future = await errorOf(read(tasks, { id, since: ts(later), follow: true }));
    t.is(future.code, Code.InvalidArgument);
    t.regex(future.rawMessage, /is in the future \(the worker's clock reads /);

    const auth = ["--manager", m.address, "--token", m.token ?? ""];
    const inFuture = new Date(Date.now() + 3_600_000).toISOString();
    const cli = await cube(["logs", "--since", inFuture, id, ...auth]);
    t.is(cli.code, 2, cli.stderr);
    t.regex(cli.stderr, /^cube: since: \S+ is in the future/);
    const words = await cube(["logs", "--since", "yesterday", id, ...auth]);
    t.is(words.code, 2, words.stderr);
    t.regex(words.stderr, /"yesterday" is neither a duration \(10m, 1h30m\) nor an RFC 3339 time/);
    const old = await cube(["logs", "--since", "1969-07-20T20:17:40Z", id, ...auth]);
    t.is(old.code, 2, old.stderr);
    t.regex(old.stderr, /before 1970-01-01T00:00:00Z/);
  },
);

test("the logs of an ended task: none made (a failed pull) is FAILED_PRECONDITION, a removed container NOT_FOUND, each saying how it ended", async (t) => {
  await requireDocker();
  const cluster = new Cluster(t, await tempDir(t));
  const m = await cluster.startManager();
  await cluster.startWorker("w1");
  const tasks = createClient(TaskService, grpcTransport(m.address, { token: m.token }));
  const state = async (id: string, wanted: TaskState) =>
    eventually(async () => {
      const { task } = await tasks.getTask({ id });
      if (task?.state !== wanted) throw new Error(`task ${id} is ${task?.state}`);
      return task;
    }, LONG);
  await tasks.runTask({ id: "no-image", spec: spec({ image: "127.0.0.1:5000/cube/none:1" }) });
  await state("no-image", TaskState.FAILED);
  const never = await errorOf(read(tasks, { id: "no-image" }));
  t.is(never.code, Code.FailedPrecondition);
  t.regex(
    never.rawMessage,
    /^task "no-image" ended FAILED \(cannot pull image .*\) without a container: it has no logs$/,
  );
  await tasks.runTask({ id: "stopped", spec: spec({ name: "stopped" }) });
  await state("stopped", TaskState.RUNNING);
  await tasks.stopTask({ id: "stopped" });
  await state("stopped", TaskState.COMPLETED);
  const gone = await errorOf(read(tasks, { id: "stopped" }));
  t.is(gone.code, Code.NotFound);
  t.is(
    gone.rawMessage,
    'task "stopped" ended COMPLETED (stopped) and its container was removed: its logs went with it',
  );
});
