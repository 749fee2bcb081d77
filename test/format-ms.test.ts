/**
 * lib/format-ms.ts: the one formatMs the manager's rules (restart and liveness messages) and
 * the worker's pull-stall message share, each printing what it printed before the move.
 */
import test from "ava";
import { formatMs } from "../lib/format-ms.js";
import { formatMs as rulesFormatMs } from "../manager/rules/restart-policy.js";

test("formatMs: ms under a second, seconds with one decimal at most above", (t) => {
  const printed = [0, 250, 999, 1000, 1234, 1500, 60_000, 90_000].map((ms) => formatMs(ms));
  t.deepEqual(printed, ["0ms", "250ms", "999ms", "1s", "1.2s", "1.5s", "60s", "90s"]);
});

test("formatMs: the rules round under a second, the pull-stall message keeps what it was given", (t) => {
  // The rules' own formatMs rounded (a backoff can be fractional); pull.ts's never did.
  t.is(formatMs(250.4), "250ms");
  t.is(formatMs(250.4, { roundMs: false }), "250.4ms");
  t.is(formatMs(1500, { roundMs: false }), "1.5s");
  // Where the rules and their tests import it from: the same function, not a copy.
  t.is(rulesFormatMs, formatMs);
});
