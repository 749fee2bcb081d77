/**
 * Carrying a followed log on through a cut stream without showing a chunk twice or skipping
 * one, as TaskLogsResponse.time (proto) tells clients to: `cube logs -f` and the dashboard's
 * log view both reopen TaskLogs with `since` and drop what they showed already.
 */
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { LogStream, TaskLogsResponse } from "../gen/cube/v1/task_service_pb.js";
import { compareTimestamps } from "./log-time.js";

/**
 * How much earlier than the latest chunk shown a reopened stream starts: the engine stamps
 * each stream's lines in order, but stores stdout's and stderr's as they come, so a line of
 * one stream may be stored after a slightly later line of the other.
 */
export const RESUME_WINDOW_MS = 1000;

/**
 * What a followed log has shown, so that a stream opened again (TaskLogs with `since`) goes
 * on where the cut one stopped, as TaskLogsResponse.time (proto) says: for each stream
 * (stdout, stderr), the latest stamp shown and how many of its chunks were shown with
 * exactly that stamp. The new stream starts {@link RESUME_WINDOW_MS} before the latest stamp
 * of all (not before the first stream's own `since`); of each stream it drops the chunks
 * stamped before that stream's latest, and as many stamped exactly at it as were shown; of a
 * stream nothing was shown of, those stamped before the first chunk shown. A stream's chunks
 * come in the order written, every time they are read, so those are the ones shown already.
 *
 * A chunk without a stamp (the engine's own note, not the container's output) is shown and
 * not counted. A stamp earlier than its stream's latest (the engine's clock set back) is
 * shown, and the latest stays: output from when the clock went back may then be missed by a
 * resume, never shown twice.
 */
export class LogResume {
  readonly #floor: Timestamp | undefined;
  #first: Timestamp | undefined;
  #streams = new Map<LogStream, { last: Timestamp; shown: number }>();
  #skip:
    | {
        first: Timestamp;
        streams: Map<LogStream, { last: Timestamp; left: number }>;
        /** The streams whose chunks are past what was shown of them. */
        past: Set<LogStream>;
      }
    | undefined;

  /** `since`: what the first stream was opened from, if anything. */
  constructor(since?: Timestamp) {
    this.#floor = since;
  }

  /** The latest stamp shown; undefined before any. */
  get latest(): Timestamp | undefined {
    let latest: Timestamp | undefined;
    for (const { last } of this.#streams.values()) {
      if (!latest || compareTimestamps(last, latest) > 0) latest = last;
    }
    return latest;
  }

  /** Where a new stream must start; undefined before anything was shown (start as at first). */
  get since(): Timestamp | undefined {
    const latest = this.latest;
    if (!latest) return undefined;
    const nanos = BigInt(latest.seconds) * 1_000_000_000n + BigInt(latest.nanos);
    let start = nanos - BigInt(RESUME_WINDOW_MS) * 1_000_000n;
    if (start < 0n) start = 0n;
    const since: Timestamp = {
      $typeName: "google.protobuf.Timestamp",
      seconds: start / 1_000_000_000n,
      nanos: Number(start % 1_000_000_000n),
    };
    return this.#floor && compareTimestamps(since, this.#floor) < 0 ? this.#floor : since;
  }

  /** A new stream starts from {@link since}: what was shown is dropped from it. */
  reopen(): void {
    if (!this.#first) return;
    const streams = new Map<LogStream, { last: Timestamp; left: number }>();
    for (const [stream, { last, shown }] of this.#streams)
      streams.set(stream, { last, left: shown });
    this.#skip = { first: this.#first, streams, past: new Set() };
  }

  /** Whether to show `chunk`; false for one shown before the cut. Counts it when it is shown. */
  take(chunk: Pick<TaskLogsResponse, "time" | "stream">): boolean {
    const time = chunk.time;
    if (!time) return true;
    const skip = this.#skip;
    // Until a stream's chunks are past what was shown of it.
    if (skip && !skip.past.has(chunk.stream)) {
      const seen = skip.streams.get(chunk.stream);
      const order = compareTimestamps(time, seen ? seen.last : skip.first);
      if (order < 0) return false;
      if (seen && order === 0 && seen.left > 0) {
        seen.left--;
        return false;
      }
      skip.past.add(chunk.stream);
    }
    this.#first ??= time;
    const stream = this.#streams.get(chunk.stream);
    if (!stream || compareTimestamps(time, stream.last) > 0) {
      this.#streams.set(chunk.stream, { last: time, shown: 1 });
    } else if (compareTimestamps(time, stream.last) === 0) {
      stream.shown++;
    }
    return true;
  }
}
