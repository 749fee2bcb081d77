/**
 * The pieces of a resumable log, without processes: the worker's parser of Docker's stamped
 * log stream (multiplexed and raw), the times (`since`, RFC 3339 to the nanosecond), and the
 * CLI's LogResume, which decides what a reopened stream must not print again.
 */
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import test from "ava";
import { parseSince, sinceTimestamp } from "../cli/since-flag.js";
import { LogStream } from "../gen/cube/v1/task_service_pb.js";
import { LogResume } from "../lib/log-resume.js";
import {
  compareTimestamps,
  dockerSince,
  formatRfc3339Nano,
  parseRfc3339,
  sinceProblem,
} from "../lib/log-time.js";
import { LogParser, MAX_CHUNK_BYTES } from "../worker/docker/logs.js";
import type { LogChunk } from "../worker/tasks/driver.js";

const ts = (seconds: number, nanos = 0): Timestamp => ({
  $typeName: "google.protobuf.Timestamp",
  seconds: BigInt(seconds),
  nanos,
});

/** A frame of Docker's multiplexed stream. */
function frame(type: number, payload: string | Buffer): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload) : payload;
  const header = Buffer.alloc(8);
  header[0] = type;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

const show = (chunks: LogChunk[]) =>
  chunks.map((c) => ({
    stream: LogStream[c.stream],
    text: Buffer.from(c.data).toString(),
    time: c.time ? formatRfc3339Nano(c.time) : undefined,
  }));

/** Feeds `bytes` to a new parser in pieces of `size` (a pattern of sizes, repeated). */
function parse(bytes: Buffer, sizes: number[]): LogChunk[] {
  const parser = new LogParser();
  const out: LogChunk[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length] as number;
    out.push(...parser.push(bytes.subarray(at, at + size)));
    at += size;
  }
  out.push(...parser.end());
  return out;
}

test("RFC 3339 times are read to the nanosecond, with their zone; bad ones are not times", (t) => {
  t.deepEqual(parseRfc3339("2026-12-06T20:00:00Z"), ts(1796587200));
  t.deepEqual(parseRfc3339("2026-12-06T20:00:00.123456789Z"), ts(1796587200, 123456789));
  t.deepEqual(parseRfc3339("2026-12-06T21:00:00.5+01:00"), ts(1796587200, 500_000_000));
  t.deepEqual(parseRfc3339("1970-01-01T00:00:00Z"), ts(0));
  // The years 0-99 are these years, not 1900-1999 (Date.UTC reads them so).
  t.deepEqual(parseRfc3339("0001-01-01T00:00:00Z"), ts(-62135596800));
  t.deepEqual(parseRfc3339("0099-12-31T23:59:59Z"), ts(-59011459201));
  for (const bad of [
    "2026-12-06T20:00:00", // no zone
    "2026-02-30T20:00:00Z",
    "2026-12-06T24:00:00Z",
    "2026-12-06",
    "10m",
    "2026-12-06T20:00:00.1234567891Z",
  ]) {
    t.is(parseRfc3339(bad), undefined, bad);
  }
  t.is(formatRfc3339Nano(ts(1796587200, 1)), "2026-12-06T20:00:00.000000001Z");
  t.is(dockerSince(ts(1700000000, 123)), "1700000000.000000123");
  t.true(compareTimestamps(ts(1, 2), ts(1, 3)) < 0);
  t.true(compareTimestamps(ts(2, 0), ts(1, 999_999_999)) > 0);
  t.is(compareTimestamps(ts(5, 5), ts(5, 5)), 0);
});

test("since: before the epoch, bad nanos, or over a minute ahead of the worker's clock is refused", (t) => {
  t.is(sinceProblem(ts(0)), undefined);
  t.regex(sinceProblem(ts(-1)) ?? "", /^since: -1 s is before 1970-01-01T00:00:00Z/);
  t.regex(sinceProblem(ts(1, 1_000_000_000)) ?? "", /nanos must be 0 to 999999999/);
  t.regex(sinceProblem(ts(1, -1)) ?? "", /nanos must be 0 to 999999999/);
  const now = 1_796_587_200_000;
  t.is(sinceProblem(ts(1796587200 + 59), now), undefined, "within the skew");
  t.regex(sinceProblem(ts(1796587200 + 61), now) ?? "", /is in the future \(the worker's clock/);
});

test("--since takes a duration back from now or an RFC 3339 time with its zone", (t) => {
  const now = 1_796_587_200_000;
  t.deepEqual(sinceTimestamp(parseSince("10m"), now), ts(1796587200 - 600));
  t.deepEqual(sinceTimestamp(parseSince("1.5s"), now), ts(1796587198, 500_000_000));
  t.deepEqual(sinceTimestamp(parseSince("1000h"), now), ts(1796587200 - 3_600_000));
  t.deepEqual(sinceTimestamp(parseSince("100000000h"), now), ts(0), "not before the epoch");
  t.deepEqual(
    sinceTimestamp(parseSince("2026-12-06T20:00:00.000000042Z"), now),
    ts(1796587200, 42),
  );
  t.throws(() => parseSince("yesterday"), {
    message: /"yesterday" is neither a duration \(10m, 1h30m\) nor an RFC 3339 time/,
  });
  t.throws(() => parseSince("2026-12-06T20:00:00"), { message: /neither a duration/ });
  t.throws(() => parseSince("-10m"), { message: /neither a duration/ });
  t.throws(() => parseSince("1969-12-31T23:59:59Z"), { message: /before 1970-01-01/ });
});

test("a multiplexed stamped stream: one chunk a frame, its stamp taken off, however the bytes arrive", (t) => {
  const bytes = Buffer.concat([
    frame(1, "2026-12-06T20:00:00.000000001Z line 0\n"),
    frame(2, "2026-12-06T20:00:00.100000000Z oops\n"),
    frame(1, "2026-12-06T20:00:00.100000000Z line 1\n"),
    frame(3, "Error grabbing logs: something\n"),
    frame(1, "2026-12-06T20:00:00.200000000+00:00 partial"),
  ]);
  const want = [
    { stream: "STDOUT", text: "line 0\n", time: "2026-12-06T20:00:00.000000001Z" },
    { stream: "STDERR", text: "oops\n", time: "2026-12-06T20:00:00.100000000Z" },
    { stream: "STDOUT", text: "line 1\n", time: "2026-12-06T20:00:00.100000000Z" },
    { stream: "UNSPECIFIED", text: "Error grabbing logs: something\n", time: undefined },
    { stream: "STDOUT", text: "partial", time: "2026-12-06T20:00:00.200000000Z" },
  ];
  for (const sizes of [[bytes.length], [1], [7, 3, 40], [9]]) {
    t.deepEqual(show(parse(bytes, sizes)), want, `pieces of ${sizes}`);
  }
});

test("a message longer than the chunk size is cut at fixed offsets, each piece with its stamp", (t) => {
  const long = `${"x".repeat(MAX_CHUNK_BYTES * 2 + 10)}\n`;
  const bytes = frame(1, `2026-12-06T20:00:00.000000001Z ${long}`);
  for (const sizes of [[bytes.length], [1000, 7], [MAX_CHUNK_BYTES + 3]]) {
    const chunks = parse(bytes, sizes);
    t.deepEqual(
      chunks.map((c) => c.data.length),
      [MAX_CHUNK_BYTES, MAX_CHUNK_BYTES, 11],
    );
    t.is(chunks.map((c) => Buffer.from(c.data).toString()).join(""), long);
    t.true(chunks.every((c) => c.time && formatRfc3339Nano(c.time).endsWith("00.000000001Z")));
  }
});

test("a TTY's raw stamped stream: one chunk a line, stdout, however the bytes arrive", (t) => {
  const bytes = Buffer.from(
    "2026-12-06T20:00:00.000000001Z one\r\n2026-12-06T20:00:01.000000000Z two\r\n2026-12-06T20:00:02.000000000Z last",
  );
  const want = [
    { stream: "STDOUT", text: "one\r\n", time: "2026-12-06T20:00:00.000000001Z" },
    { stream: "STDOUT", text: "two\r\n", time: "2026-12-06T20:00:01.000000000Z" },
    { stream: "STDOUT", text: "last", time: "2026-12-06T20:00:02.000000000Z" },
  ];
  for (const sizes of [[bytes.length], [1], [5, 31]]) {
    t.deepEqual(show(parse(bytes, sizes)), want, `pieces of ${sizes}`);
  }
});

test("LogResume: a reopened stream starts a second before the latest stamp shown; of each stream, what was shown is dropped, by stamp and count", (t) => {
  const at = (ms: number, stream = LogStream.STDOUT) => ({
    time: ts(Math.floor(ms / 1000), (ms % 1000) * 1_000_000),
    stream,
  });
  const OUT = LogStream.STDOUT;
  const ERR = LogStream.STDERR;
  const resume = new LogResume();
  t.is(resume.since, undefined, "nothing shown: start as at first");
  // The first stream, cut after two stdout chunks stamped 12 s.
  for (const c of [at(10_000), at(10_500, ERR), at(11_000), at(12_000), at(12_000)]) {
    t.true(resume.take(c));
  }
  t.deepEqual(resume.since, ts(11), "a second before the latest");
  resume.reopen();
  // From 11 s, as the engine stored them: stderr's 11.9 s line came after stdout's 12 s ones.
  const second = [
    at(11_000),
    at(12_000),
    at(12_000),
    at(11_900, ERR), // never shown: stamped before 12 s, stored after the cut
    at(12_000), // a third stdout chunk at 12 s: new
    at(13_000, OUT),
  ];
  t.deepEqual(
    second.map((c) => resume.take(c)),
    [false, false, false, true, true, true],
  );
  t.deepEqual(resume.since, ts(12));
  // A note without a stamp is shown and counts for nothing.
  t.true(resume.take({ time: undefined, stream: LogStream.UNSPECIFIED }));
  t.deepEqual(resume.since, ts(12));
  // Cut again at once: the next stream drops the one chunk at 13 s, and stderr up to 11.9 s.
  resume.reopen();
  t.deepEqual(
    [at(11_900, ERR), at(13_000), at(13_000), at(13_100, ERR)].map((c) => resume.take(c)),
    [false, false, true, true],
  );
  // An older stamp after a newer one (the clock set back) is shown; since stays.
  t.true(resume.take(at(1_000)));
  t.deepEqual(resume.since, ts(12, 100_000_000));
});

test("LogResume: of a stream nothing was shown of, what is stamped before the first chunk shown is dropped; never before the first since", (t) => {
  const at = (seconds: number, stream = LogStream.STDOUT) => ({ time: ts(seconds), stream });
  const resume = new LogResume();
  t.true(resume.take(at(5)));
  resume.reopen();
  t.deepEqual(
    [at(4, LogStream.STDERR), at(5), at(5, LogStream.STDERR), at(6)].map((c) => resume.take(c)),
    [false, false, true, true],
  );
  const from = new LogResume(ts(100));
  t.true(from.take({ time: ts(100, 500_000_000), stream: LogStream.STDOUT }));
  t.deepEqual(from.since, ts(100), "not before --since");
});
