import { create, toBinary } from "@bufbuild/protobuf";
import test from "ava";
import { TaskSchema } from "../gen/cube/v1/task_pb.js";
import { Bytes } from "../lib/wire.js";

// Short ASCII strings take a hand-copied path; the rest go through Buffer. Both must write
// what protobuf-es writes, at the edges between them too.
const cases: [string, string][] = [
  ["empty", ""],
  ["short ASCII", "tp-1-12345"],
  ["127 ASCII characters (the longest hand-copied)", "x".repeat(127)],
  ["128 ASCII characters (a two-byte length)", "x".repeat(128)],
  ["non-ASCII first", "éa"],
  ["non-ASCII last after 126 ASCII", `${"a".repeat(126)}é`],
  ["multi-byte characters", "日本語 ✓"],
  ["a surrogate pair", "🐳 whale"],
];

for (const [name, value] of cases) {
  test(`Bytes.stringAlways writes protobuf's bytes: ${name}`, (t) => {
    const ours = new Bytes(4).stringAlways(1, value).stringAlways(10, "ok").finish();
    const theirs = toBinary(TaskSchema, create(TaskSchema, { id: value, reason: "ok" }));
    if (value === "") {
      // protobuf-es leaves an empty id out; stringAlways writes it (list items, map keys).
      t.deepEqual([...ours.subarray(2)], [...theirs]);
    } else {
      t.deepEqual([...ours], [...theirs]);
    }
  });
}
