/**
 * `watchUntil` (cli/reconnect.ts), behind `cube job run|revert --wait` and `cube node drain
 * --wait`: through restarts of the manager it says once that it lost the manager and once
 * that it is back, a pair a restart, on stderr.
 */
import { PassThrough } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import test from "ava";
import type { Io } from "../cli/io.js";
import { watchUntil } from "../cli/reconnect.js";

const ADDRESS = "127.0.0.1:5555";
const LOST = `lost the manager at ${ADDRESS}, reconnecting…\n`;
const BACK = `reconnected to the manager at ${ADDRESS}\n`;

test("watchUntil says lost, then reconnected once a reopened watch answers: one pair a restart", async (t) => {
  const stderr = new PassThrough();
  let err = "";
  stderr.on("data", (chunk) => {
    err += String(chunk);
  });
  const io: Io = {
    stdout: new PassThrough(),
    stderr,
    env: {},
    now: () => Date.now(),
    interrupted: new AbortController().signal,
  };
  const down = () => new ConnectError("connection refused", Code.Unavailable);
  // Each open of the watch: messages it yields, then how it ends (a cut, or the manager down).
  const opens: (() => AsyncIterable<string>)[] = [
    async function* () {
      yield "first";
      throw down(); // the manager restarts
    },
    async function* () {
      yield* [];
      throw down(); // still away
    },
    async function* () {
      yield "again";
      throw down(); // a second restart
    },
    async function* () {
      yield "done";
    },
  ];
  const seen: string[] = [];
  await watchUntil(
    io,
    ADDRESS,
    io.interrupted,
    () => {
      const next = opens.shift();
      if (!next) throw new Error("opened too often");
      return next();
    },
    (message) => {
      seen.push(message);
      return message === "done";
    },
  );
  t.deepEqual(seen, ["first", "again", "done"]);
  t.is(err, LOST + BACK + LOST + BACK);
});
