import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import test from "ava";
import { timestampLiteral } from "../lib/timestamp.js";

test("timestampLiteral is the Timestamp timestampFromMs makes", (t) => {
  for (const ms of [0, 1, 999, 1000, 1_795_000_000_123, 1_795_000_000_999]) {
    t.deepEqual({ ...timestampLiteral(ms) }, { ...timestampFromMs(ms) }, String(ms));
  }
});
