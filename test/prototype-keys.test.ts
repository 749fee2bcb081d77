/**
 * Map keys named like Object.prototype's properties (constructor, toString, __proto__): a
 * protobuf map is a plain object, so `key in map` finds them in every map and `out[key] = v`
 * sets the prototype for `__proto__`. Each place that asks or builds a map from user keys
 * sees only the map's own keys.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import test from "ava";
import { toRecord } from "../cli/parse-key-value.js";
import { JobSpecSchema } from "../gen/cube/v1/job_pb.js";
import { TaskSpecSchema } from "../gen/cube/v1/task_pb.js";
import { REDACTED, redactSpec } from "../lib/redact.js";
import { SecretBox } from "../lib/secret-box.js";
import { revertWarnings } from "../manager/rules/revert-warnings.js";
import { parseLabels } from "../worker/env.js";
import { harness, spec } from "./manager-harness.js";

/** A record with these own keys, `__proto__` included (a literal would set the prototype). */
const own = (...entries: [string, string][]) => Object.fromEntries(entries);

test("RunTask: a secret_env name like constructor or toString is not 'also in spec.env' when env lacks it; one env has is", async (t) => {
  const h = await harness(t);
  // The QA's request: {"secretEnv":{"constructor":"abcdef"}}, refused as "also in spec.env".
  const { task } = await h.tasks.runTask({
    spec: spec({
      secretEnv: own(["constructor", "abcdef"], ["toString", "x1"], ["__proto__", "x2"]),
    }),
  });
  t.deepEqual(Object.keys(task?.spec?.secretEnv ?? {}).sort(), [
    "__proto__",
    "constructor",
    "toString",
  ]);
  const refused = await h.tasks
    .runTask({ spec: spec({ env: { toString: "a" }, secretEnv: { toString: "b" } }) })
    .catch((error: unknown) => ConnectError.from(error));
  t.is((refused as ConnectError).code, Code.InvalidArgument);
  t.is(
    (refused as ConnectError).rawMessage,
    'spec.secret_env["toString"]: is also in spec.env: give it once',
  );
});

test("revertWarnings: keys like constructor and toString are compared as the map's own", (t) => {
  const job = (secretEnv: Record<string, string>) =>
    create(JobSpecSchema, { name: "web", template: { image: "x", secretEnv } });
  // The target lacks constructor: the revert drops it (it was not reported).
  t.deepEqual(revertWarnings(job({ constructor: "c" }), job({}), 5n, 2n), [
    "version 2 has no secret_env constructor: its replicas run without it",
  ]);
  // Only the target has toString: nothing hidden (it was reported as a changed value).
  t.deepEqual(revertWarnings(job({}), job({ toString: "t" }), 5n, 2n), []);
});

test("secret values under a key named __proto__ survive sealing, opening and redaction; repeated flags and worker labels keep it too", async (t) => {
  const box = new SecretBox(new Uint8Array(32));
  const values = own(["__proto__", "s3cret"], ["constructor", "c0nst"]);
  const sealed = box.sealAll(values);
  t.deepEqual(Object.keys(sealed), ["__proto__", "constructor"]);
  t.deepEqual(box.openAll(sealed), values);
  const redacted = redactSpec(create(TaskSpecSchema, { image: "x", secretEnv: values }));
  t.deepEqual(redacted.secretEnv, own(["__proto__", REDACTED], ["constructor", REDACTED]));
  t.deepEqual(
    toRecord([
      ["__proto__", "1"],
      ["A", "2"],
    ]),
    own(["__proto__", "1"], ["A", "2"]),
  );
  t.deepEqual(parseLabels("__proto__=a,zone=b"), own(["__proto__", "a"], ["zone", "b"]));
});
