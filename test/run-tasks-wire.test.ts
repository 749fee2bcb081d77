import { create, equals, fromBinary, fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import test from "ava";
import { answeredTasks, CountingTaskService, replicaRequests } from "../bench/replica-requests.js";
import { TaskSpecSchema } from "../gen/cube/v1/task_pb.js";
import {
  RunTaskRequestSchema,
  type RunTasksRequest,
  RunTasksRequestSchema,
  TaskService,
  TaskView,
} from "../gen/cube/v1/task_service_pb.js";
import { Bytes } from "../lib/wire.js";
import {
  RunTasksRequestWireSchema,
  wireRequests,
  withWireRunTasks,
} from "../manager/run-tasks-wire.js";

const spec = {
  name: "web",
  image: "cube/httpd:local",
  command: ["httpd", "-f"],
  env: { MODE: "é" },
  ports: [{ containerPort: 80 }],
  resources: { cpu: 0.5, memoryBytes: 64n << 20n },
  labels: { app: "web" },
};
const other = { ...spec, image: "cube/httpd:other" };

function plain(specs: (typeof spec)[], ids: string[], view?: TaskView): RunTasksRequest {
  return create(RunTasksRequestSchema, {
    requests: ids.map((id, i) => ({ id, spec: specs[i] })),
    ...(view === undefined ? {} : { view }),
  });
}

/** What the manager reads from `bytes`. */
function read(bytes: Uint8Array) {
  return wireRequests(fromBinary(RunTasksRequestWireSchema, bytes) as unknown as RunTasksRequest);
}

test("replicaRequests writes the bytes of the plain message, spec encoded once", (t) => {
  const ids = ["a", "", "c".repeat(64)];
  const ours = toBinary(RunTasksRequestSchema, replicaRequests(spec, ids));
  const theirs = toBinary(RunTasksRequestSchema, plain([spec, spec, spec], ids));
  t.deepEqual([...ours], [...theirs]);
  // With a view, protobuf-es writes it before the unknown fields: another order, same message.
  const viewed = replicaRequests(create(TaskSpecSchema, spec), ids, TaskView.BASIC);
  t.true(
    equals(
      RunTasksRequestSchema,
      fromBinary(RunTasksRequestSchema, toBinary(RunTasksRequestSchema, viewed)),
      plain([spec, spec, spec], ids, TaskView.BASIC),
    ),
  );
});

test("the manager reads binary requests as fromBinary does, sharing equal specs", (t) => {
  const message = plain([spec, spec, other, spec], ["a", "b", "c", "d"]);
  const got = read(toBinary(RunTasksRequestSchema, message));
  t.is(got.length, 4);
  got.forEach((request, i) => {
    t.true(equals(RunTaskRequestSchema, request, message.requests[i] as never), `requests[${i}]`);
  });
  // Only a run of equal bytes shares: the 4th follows a different spec and is read again.
  t.is(got[0]?.spec, got[1]?.spec);
  t.not(got[1]?.spec, got[2]?.spec);
  t.not(got[0]?.spec, got[3]?.spec);
});

test("the manager reads a request without spec or id, and the view", (t) => {
  const bytes = toBinary(
    RunTasksRequestSchema,
    create(RunTasksRequestSchema, { requests: [{}, { id: "x" }], view: TaskView.BASIC }),
  );
  const wire = fromBinary(RunTasksRequestWireSchema, bytes) as unknown as RunTasksRequest;
  t.is(wire.view, TaskView.BASIC);
  const got = wireRequests(wire);
  t.deepEqual(
    got.map((r) => [r.id, r.spec]),
    [
      ["", undefined],
      ["x", undefined],
    ],
  );
});

test("a request with a field the reader does not expect goes to fromBinary whole", (t) => {
  const entry = new Bytes()
    .field(1, toBinary(TaskSpecSchema, create(TaskSpecSchema, spec)))
    .string(2, "a")
    .string(99, "from a newer client")
    // A second spec field merges into the first (protobuf's rule for message fields).
    .field(1, toBinary(TaskSpecSchema, create(TaskSpecSchema, { name: "merged" })))
    .finish();
  const bytes = new Bytes().field(1, entry).finish();
  const [got] = read(bytes);
  t.is(got?.id, "a");
  t.is(got?.spec?.name, "merged");
  t.is(got?.spec?.image, spec.image);
});

test("a truncated request is INVALID_ARGUMENT naming its index", (t) => {
  const good = new Bytes().string(2, "a").finish();
  const truncated = new Uint8Array([0x0a, 0x05, 0x01]);
  const bytes = new Bytes().field(1, good).field(1, truncated).finish();
  const error = t.throws(() => read(bytes), { instanceOf: ConnectError }) as ConnectError;
  t.is(error.code, Code.InvalidArgument);
  t.regex(error.rawMessage, /^requests\[1\]: cannot decode/);
});

test("JSON requests keep their field name through the twin", (t) => {
  const json = toJson(RunTasksRequestSchema, plain([spec], ["a"], TaskView.BASIC));
  const wire = fromJson(RunTasksRequestWireSchema, json) as unknown as RunTasksRequest;
  t.is(wire.view, TaskView.BASIC);
  const [got] = wireRequests(wire);
  t.is(got?.id, "a");
  t.is(got?.spec?.image, spec.image);
});

test("a service with the twin answers clients of the real contract, binary and JSON", async (t) => {
  for (const useBinaryFormat of [true, false]) {
    const transport = createRouterTransport(
      (router) =>
        router.service(withWireRunTasks(TaskService), {
          runTasks: (req) => ({
            tasks: wireRequests(req).map((r) => ({ id: r.id, spec: r.spec })),
          }),
        }),
      { transport: { useBinaryFormat } },
    );
    const client = createClient(TaskService, transport);
    const sent = useBinaryFormat
      ? replicaRequests(spec, ["a", "b"])
      : plain([spec, spec], ["a", "b"]);
    const answer = await client.runTasks(sent);
    t.deepEqual(
      answer.tasks.map((task) => [task.id, task.spec?.image]),
      [
        ["a", spec.image],
        ["b", spec.image],
      ],
      useBinaryFormat ? "binary" : "JSON",
    );
  }
});

test("the benchmark's counting client counts the tasks of an answer without decoding them", async (t) => {
  const transport = createRouterTransport((router) =>
    router.service(withWireRunTasks(TaskService), {
      runTasks: (req) => ({ tasks: wireRequests(req).map((r) => ({ id: r.id, spec: r.spec })) }),
    }),
  );
  const ids = ["a", "b", "c"];
  const counted = await createClient(CountingTaskService, transport).runTasks(
    replicaRequests(spec, ids),
  );
  t.is(counted.tasks.length, 0, "nothing decoded");
  t.is(answeredTasks(counted), 3);
  // The real contract's client decodes them all; the count is the same.
  const decoded = await createClient(TaskService, transport).runTasks(replicaRequests(spec, ids));
  t.is(answeredTasks(decoded), 3);
  t.deepEqual(
    decoded.tasks.map((task) => task.id),
    ids,
  );
});
