/**
 * Container output, read with Docker's timestamps: the engine writes each message it stored
 * (a line, or a piece of 16 KiB of a longer one) as its own write, prefixed by the time the
 * container wrote it ("2026-12-06T20:00:00.123456789Z "). Without a TTY the response is
 * multiplexed: each write is a frame of an 8-byte header (stream type, 3 zero bytes,
 * big-endian length) and its payload, so a frame is one message. With a TTY (cube never
 * makes one, see container-spec.ts, but a container adopted by its labels may have one)
 * the bytes come raw, stdout and stderr as one: messages are then told apart by their
 * newlines. The two are told apart by the first byte: a frame starts with its stream type
 * (0 to 3), a stamped raw stream with a digit.
 *
 * Each message becomes one chunk stamped with its time; a message longer than
 * {@link MAX_CHUNK_BYTES} is cut at fixed offsets into chunks of that size, all with its
 * stamp. So the chunks of a log are the same however its bytes arrive, which a client that
 * resumes a cut stream relies on (it counts the chunks it has shown with the last stamp), and
 * the parser holds at most one chunk and a header. One incremental parser serves both the
 * followed stream and the one-shot output, and keeps stdout and stderr in their original
 * order (two demuxed streams would not). Both are read as a stream: dockerode hands the
 * one-shot output over as one Buffer, which for a chatty container is its whole log in memory.
 */
import type { Readable } from "node:stream";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type Docker from "dockerode";
import { LogStream } from "../../gen/cube/v1/task_service_pb.js";
import { dockerSince, parseRfc3339 } from "../../lib/log-time.js";
import type { LogChunk } from "../tasks/driver.js";

/** The largest chunk sent: a longer message is cut into chunks of this size. */
export const MAX_CHUNK_BYTES = 64 * 1024;

/** Enough for Docker's stamp and its space ("…T15:04:05.000000000+07:00 " is 36). */
const STAMP_MAX_BYTES = 48;

/** A frame's stream type: 1 stdout, 2 stderr; 0 (stdin) and 3 (the engine's own errors) are no output. */
function streamOf(type: number): LogStream {
  return type === 2 ? LogStream.STDERR : type === 1 ? LogStream.STDOUT : LogStream.UNSPECIFIED;
}

/**
 * The stamp at the start of `head` and the length of it with its space; undefined when there
 * is none (the engine's own error notes carry none).
 */
function readStamp(head: Buffer): { time: Timestamp; length: number } | undefined {
  const space = head.indexOf(0x20);
  if (space < 20 || space >= STAMP_MAX_BYTES) return undefined;
  const time = parseRfc3339(head.toString("latin1", 0, space));
  return time ? { time, length: space + 1 } : undefined;
}

/** Splits stamped log bytes into chunks; feed it pieces in order, it keeps what is partial. */
export class LogParser {
  #buffer: Buffer = Buffer.alloc(0);
  #mode: "mux" | "raw" | undefined;
  /** The frame being read (mux): its stream, its stamp once read, the bytes left of it. */
  #frame:
    | { stream: LogStream; time: Timestamp | undefined; remaining: number; started: boolean }
    | undefined;
  /** The message being read (raw): its stamp, until its newline. */
  #line: { stream: LogStream; time: Timestamp | undefined } | undefined;

  /** The chunks now complete. */
  push(data: Buffer): LogChunk[] {
    if (data.length === 0) return [];
    this.#buffer = this.#buffer.length === 0 ? data : Buffer.concat([this.#buffer, data]);
    this.#mode ??= (this.#buffer[0] as number) <= 3 ? "mux" : "raw";
    return this.#mode === "mux" ? this.#mux() : this.#raw(false);
  }

  /** What is left once the response has ended: a last raw line without its newline. */
  end(): LogChunk[] {
    return this.#mode === "raw" ? this.#raw(true) : [];
  }

  #mux(): LogChunk[] {
    const chunks: LogChunk[] = [];
    let offset = 0;
    const available = () => this.#buffer.length - offset;
    for (;;) {
      if (!this.#frame) {
        if (available() < 8) break;
        const type = this.#buffer[offset] as number;
        const length = this.#buffer.readUInt32BE(offset + 4);
        offset += 8;
        if (length === 0) continue;
        this.#frame = {
          stream: streamOf(type),
          time: undefined,
          remaining: length,
          started: false,
        };
      }
      const m = this.#frame;
      if (!m.started) {
        // The stamp first: all of it is in the frame's first bytes (or the frame is shorter).
        if (available() < Math.min(m.remaining, STAMP_MAX_BYTES)) break;
        const head = this.#buffer.subarray(offset, offset + Math.min(m.remaining, STAMP_MAX_BYTES));
        const stamp = m.stream === LogStream.UNSPECIFIED ? undefined : readStamp(head);
        if (stamp) {
          m.time = stamp.time;
          offset += stamp.length;
          m.remaining -= stamp.length;
        }
        m.started = true;
      }
      const size = Math.min(m.remaining, MAX_CHUNK_BYTES);
      if (size === 0) {
        this.#frame = undefined;
        continue;
      }
      if (available() < size) break;
      chunks.push(chunk(m.stream, this.#buffer.subarray(offset, offset + size), m.time));
      offset += size;
      m.remaining -= size;
      if (m.remaining === 0) this.#frame = undefined;
    }
    this.#buffer = this.#buffer.subarray(offset);
    return chunks;
  }

  #raw(end: boolean): LogChunk[] {
    const chunks: LogChunk[] = [];
    let offset = 0;
    const available = () => this.#buffer.length - offset;
    while (available() > 0) {
      if (!this.#line) {
        // A new message: its stamp first (all of it, unless the response ended).
        const head = this.#buffer.subarray(offset, offset + STAMP_MAX_BYTES);
        const stamp = readStamp(head);
        const newline = head.indexOf(0x0a);
        if (!stamp && head.length < STAMP_MAX_BYTES && newline < 0 && !end) break;
        this.#line = {
          stream: stamp ? LogStream.STDOUT : LogStream.UNSPECIFIED,
          time: stamp?.time,
        };
        offset += stamp?.length ?? 0;
      }
      const m = this.#line;
      const window = this.#buffer.subarray(offset, offset + MAX_CHUNK_BYTES);
      const newline = window.indexOf(0x0a);
      let size: number;
      if (newline >= 0) size = newline + 1;
      else if (window.length === MAX_CHUNK_BYTES || end) size = window.length;
      else break;
      if (size > 0) chunks.push(chunk(m.stream, window.subarray(0, size), m.time));
      offset += size;
      // A line cut at the chunk size goes on with the same stamp.
      if (newline >= 0 || end) this.#line = undefined;
    }
    this.#buffer = this.#buffer.subarray(offset);
    return chunks;
  }
}

function chunk(stream: LogStream, data: Buffer, time: Timestamp | undefined): LogChunk {
  // A copy: the parser's buffer is a view that later reads would keep alive.
  return { stream, data: new Uint8Array(data), ...(time ? { time } : {}) };
}

/**
 * The container's output: the last `tail` lines (0 = all) of what was written at or after
 * `since` (all when undefined), then, when `follow`, what it writes until it exits or
 * `signal` aborts. Each chunk carries the time the container wrote it.
 */
export async function* containerLogs(
  container: Docker.Container,
  options: { follow: boolean; tail: number; since?: Timestamp; signal: AbortSignal },
): AsyncGenerator<LogChunk> {
  const query: Record<string, string | number | boolean> = {
    stdout: true,
    stderr: true,
    tail: options.tail > 0 ? options.tail : "all",
    timestamps: true,
    follow: options.follow,
  };
  if (options.since) query.since = dockerSince(options.since);
  const parser = new LogParser();
  if (options.signal.aborted) return;
  const stream = await logStream(container, query);
  const abort = () => stream.destroy();
  if (options.signal.aborted) abort();
  options.signal.addEventListener("abort", abort, { once: true });
  try {
    for await (const data of stream) yield* parser.push(data as Buffer);
    yield* parser.end();
  } catch (error) {
    // Aborting destroys the stream, which ends the loop with a premature-close error.
    if (!options.signal.aborted) throw error;
  } finally {
    options.signal.removeEventListener("abort", abort);
    stream.destroy();
  }
}

/**
 * The response of Docker's logs endpoint as a stream, followed or not (dockerode's
 * `container.logs` streams only when following).
 */
function logStream(
  container: Docker.Container,
  query: Record<string, string | number | boolean>,
): Promise<Readable> {
  return new Promise((resolve, reject) => {
    container.modem.dial(
      {
        path: `/containers/${container.id}/logs?`,
        method: "GET",
        isStream: true,
        statusCodes: { 200: true, 404: "no such container", 500: "server error" },
        options: query,
      },
      (error: Error | null, stream: Readable) => (error ? reject(error) : resolve(stream)),
    );
  });
}
