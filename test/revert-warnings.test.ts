/** revertWarnings: what a revert does to secret values, by named cases. */
import { create } from "@bufbuild/protobuf";
import test from "ava";
import { JobSpecSchema } from "../gen/cube/v1/job_pb.js";
import { revertWarnings } from "../manager/rules/revert-warnings.js";

const withSecrets = (secretEnv: Record<string, string>) =>
  create(JobSpecSchema, { name: "web", template: { image: "x", secretEnv } });

const cases: [string, Record<string, string>, Record<string, string>, string[]][] = [
  ["no secrets on either side", {}, {}, []],
  ["the same values", { A: "1", B: "2" }, { B: "2", A: "1" }, []],
  [
    "a value rotated since the target version",
    { DB_PASSWORD: "new" },
    { DB_PASSWORD: "old" },
    [
      "version 2 has other values than version 5 for secret_env DB_PASSWORD: the revert brings version 2's back (apply the job with the current values to keep them)",
    ],
  ],
  [
    "keys listed sorted, values never",
    { Z: "new", A: "new" },
    { A: "old", Z: "old" },
    [
      "version 2 has other values than version 5 for secret_env A, Z: the revert brings version 2's back (apply the job with the current values to keep them)",
    ],
  ],
  [
    "a key the target version lacks",
    { API_KEY: "k" },
    {},
    ["version 2 has no secret_env API_KEY: its replicas run without it"],
  ],
  [
    "keys the target lacks, and one it changes",
    { A: "1", B: "2", C: "3" },
    { A: "0" },
    [
      "version 2 has other values than version 5 for secret_env A: the revert brings version 2's back (apply the job with the current values to keep them)",
      "version 2 has no secret_env B, C: its replicas run without them",
    ],
  ],
  ["a key only the target has (visible in its spec): nothing hidden", {}, { NEW: "1" }, []],
];

for (const [name, current, target, expected] of cases) {
  test(`revertWarnings: ${name}`, (t) => {
    const warnings = revertWarnings(withSecrets(current), withSecrets(target), 5n, 2n);
    t.deepEqual(warnings, expected);
    for (const value of [...Object.values(current), ...Object.values(target)]) {
      if (value.length > 1) t.false(warnings.join("\n").includes(value), `value ${value} shown`);
    }
  });
}

test("revertWarnings: specs without a template warn of nothing", (t) => {
  t.deepEqual(revertWarnings(undefined, undefined, 2n, 1n), []);
});
