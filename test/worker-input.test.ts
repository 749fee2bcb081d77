/**
 * What a worker says is bounded like what a client says: a Register with an unbounded or
 * unprintable field ends the stream with INVALID_ARGUMENT naming it, and long report text
 * (reasons, health and progress messages) is cut, saying so, rather than stored whole in
 * every event of the task. Through the manager harness (the real routes over
 * createRouterTransport), and the pure check by named cases.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import test from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { RegisterSchema } from "../gen/cube/v1/worker_service_pb.js";
import { clip, REPORT_TEXT_LIMIT } from "../manager/rules/task-updates.js";
import { validateRegister } from "../manager/rules/validate-register.js";
import { eventually, FakeWorker, harness, spec } from "./manager-harness.js";

const labels = (n: number) =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));

test("validateRegister: named cases", (t) => {
  const ok = { workerId: "w1", name: "one", address: "10.0.0.5:5556", version: "0.1.0" };
  const cases: [string, Parameters<typeof create<typeof RegisterSchema>>[1], RegExp | null][] = [
    ["a usual worker", { ...ok, labels: labels(64), capacity: { cpu: 64 } }, null],
    ["no worker id", { ...ok, workerId: "" }, /^register\.worker_id: 1-128/],
    ["a worker id with a slash", { ...ok, workerId: "a/b" }, /^register\.worker_id/],
    ["65 labels", { ...ok, labels: labels(65) }, /^register\.labels: at most 64 entries/],
    [
      "a label value with a bidirectional override",
      { ...ok, labels: { zone: "eu\u202eus" } },
      /^register\.labels\["zone"\]: must not contain bidirectional/,
    ],
    [
      "a name with a newline",
      { ...ok, name: "one\ntwo" },
      /^register\.name: must not contain control/,
    ],
    ["a 1,025-character address", { ...ok, address: "a".repeat(1025) }, /^register\.address/],
    ["cpu NaN", { ...ok, capacity: { cpu: Number.NaN } }, /^register\.capacity\.cpu/],
    ["cpu below 0", { ...ok, capacity: { cpu: -1 } }, /^register\.capacity\.cpu/],
    [
      "memory over 1 PiB",
      { ...ok, capacity: { memoryBytes: 2n ** 51n } },
      /^register\.capacity\.memory_bytes/,
    ],
    ["a call secret", { ...ok, callSecret: "A".repeat(43) }, null],
    [
      "a 129-character call secret",
      { ...ok, callSecret: "A".repeat(129) },
      /^register\.call_secret: at most 128 printable ASCII/,
    ],
    [
      "a call secret with a space",
      { ...ok, callSecret: "a b" },
      /^register\.call_secret: at most 128 printable ASCII/,
    ],
    [
      "a 4,097-character engine reason",
      { ...ok, engine: { reason: "x".repeat(4097) } },
      /^register\.engine\.reason/,
    ],
  ];
  for (const [name, init, want] of cases) {
    let got: string | null = null;
    try {
      validateRegister(create(RegisterSchema, init));
    } catch (error) {
      t.is(ConnectError.from(error).code, Code.InvalidArgument, name);
      got = ConnectError.from(error).rawMessage;
    }
    if (want === null) t.is(got, null, name);
    else t.regex(got ?? "(accepted)", want, name);
  }
});

test("a worker registering 65 labels is refused with INVALID_ARGUMENT, and not listed", async (t) => {
  const h = await harness(t);
  const w = new FakeWorker("w-many", { labels: labels(65) });
  const error = await t.throwsAsync(w.connect(h.transport));
  const cause = ConnectError.from((error as Error).cause);
  t.is(cause.code, Code.InvalidArgument);
  t.regex(cause.rawMessage, /^register\.labels: at most 64 entries/);
  t.deepEqual((await h.workers.listWorkers({})).workers, []);
});

test("a worker's long reason is cut to the limit, saying so", async (t) => {
  t.is(clip("short"), "short");
  const h = await harness(t);
  const w = new FakeWorker("w1", { auto: false });
  await w.connect(h.transport);
  const { task } = await h.tasks.runTask({ id: "long", spec: spec() });
  const a = await w.waitFor((x) => x.task?.id === "long");
  w.update("long", a.task?.generation ?? 1n, TaskState.RUNNING, { reason: "r".repeat(10_000) });
  const event = await eventually(async () => {
    const { events } = await h.tasks.listTaskEvents({ taskId: task?.id ?? "" });
    const running = events.find((e) => e.task?.state === TaskState.RUNNING);
    if (!running) throw new Error("not RUNNING yet");
    return running;
  });
  t.is(event.message.length, REPORT_TEXT_LIMIT + " (cut from 10000 characters)".length + 1);
  t.true(event.message.endsWith("… (cut from 10000 characters)"), event.message.slice(-40));
});
