import { create, equals, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import test from "ava";
import { RestartMode, TaskSpecSchema } from "../gen/cube/v1/task_pb.js";
import { sameMessage } from "../lib/same-message.js";

type Init = MessageInitShape<typeof TaskSpecSchema>;

const BASE: Init = {
  name: "web",
  image: "cube/httpd:local",
  command: ["httpd", "-f"],
  env: { A: "1", B: "2" },
  labels: { tier: "web" },
  ports: [{ containerPort: 80, hostPort: 8080 }],
  resources: { cpu: 0.5, memoryBytes: 64n << 20n },
  restartPolicy: { mode: RestartMode.ALWAYS, maxRestarts: 3 },
  healthCheck: { path: "/health", port: 80 },
};

/** Decoded from the wire, as a RunTasks request's specs are. */
const decoded = (init: Init) =>
  fromBinary(TaskSpecSchema, toBinary(TaskSpecSchema, create(TaskSpecSchema, init)));

const cases: { name: string; other: Init; same: boolean }[] = [
  { name: "an equal spec", other: BASE, same: true },
  { name: "map entries in another order", other: { ...BASE, env: { B: "2", A: "1" } }, same: true },
  { name: "another image", other: { ...BASE, image: "cube/other:local" }, same: false },
  { name: "list order", other: { ...BASE, command: ["-f", "httpd"] }, same: false },
  { name: "one list item more", other: { ...BASE, command: ["httpd", "-f", "-v"] }, same: false },
  { name: "a map value", other: { ...BASE, labels: { tier: "db" } }, same: false },
  { name: "a map key more", other: { ...BASE, labels: { tier: "web", x: "" } }, same: false },
  { name: "a bigint", other: { ...BASE, resources: { cpu: 0.5, memoryBytes: 1n } }, same: false },
  { name: "a nested message missing", other: { ...BASE, healthCheck: undefined }, same: false },
  {
    name: "a repeated message's field",
    other: { ...BASE, ports: [{ containerPort: 80, hostPort: 8081 }] },
    same: false,
  },
  {
    name: "an enum in a nested message",
    other: { ...BASE, restartPolicy: { mode: RestartMode.ON_FAILURE, maxRestarts: 3 } },
    same: false,
  },
];

for (const c of cases) {
  test(`sameMessage: ${c.name} → ${c.same}`, (t) => {
    const a = decoded(BASE);
    const b = decoded(c.other);
    t.is(sameMessage(a, b), c.same);
    t.is(sameMessage(b, a), c.same, "symmetric");
    t.is(equals(TaskSpecSchema, a, b), c.same, "agrees with protobuf-es equals");
  });
}

test("sameMessage: bytes, arrays and scalars as values", (t) => {
  t.true(sameMessage(new Uint8Array([1, 2]), new Uint8Array([1, 2])));
  t.false(sameMessage(new Uint8Array([1, 2]), new Uint8Array([1, 3])));
  t.false(sameMessage(new Uint8Array([1]), [1]));
  t.false(sameMessage([1], { 0: 1 }));
  t.false(sameMessage(undefined, decoded(BASE)));
  t.true(sameMessage(5n, 5n));
  t.false(sameMessage(5n, 5));
});
