/**
 * Container output. Without a TTY Docker multiplexes stdout and stderr into frames of
 * an 8-byte header (stream type, 3 zero bytes, big-endian length) and payload. One
 * incremental parser serves both the followed stream and the one-shot Buffer, and keeps
 * stdout and stderr in their original order (two demuxed streams would not). Both the
 * followed and the one-shot output are read as a stream: dockerode hands the one-shot
 * output over as one Buffer, which for a chatty container is its whole log in memory.
 */
import type { Readable } from "node:stream";
import type Docker from "dockerode";
import { LogStream } from "../../gen/cube/v1/task_service_pb.js";
import type { LogChunk } from "../tasks/driver.js";

/** Splits multiplexed bytes into chunks; feed it pieces in order, it keeps partial frames. */
export class MuxParser {
  #buffer: Buffer = Buffer.alloc(0);

  /** The complete frames now available. */
  push(data: Buffer): LogChunk[] {
    this.#buffer = this.#buffer.length === 0 ? data : Buffer.concat([this.#buffer, data]);
    const chunks: LogChunk[] = [];
    let offset = 0;
    while (this.#buffer.length - offset >= 8) {
      const type = this.#buffer[offset];
      const length = this.#buffer.readUInt32BE(offset + 4);
      if (this.#buffer.length - offset - 8 < length) break;
      const payload = this.#buffer.subarray(offset + 8, offset + 8 + length);
      offset += 8 + length;
      if (length === 0) continue;
      chunks.push({
        stream:
          type === 2 ? LogStream.STDERR : type === 1 ? LogStream.STDOUT : LogStream.UNSPECIFIED,
        data: new Uint8Array(payload),
      });
    }
    this.#buffer = this.#buffer.subarray(offset);
    return chunks;
  }
}

/**
 * The container's output: the last `tail` lines (0 = all), then, when `follow`, what
 * it writes until it exits or `signal` aborts.
 */
export async function* containerLogs(
  container: Docker.Container,
  options: { follow: boolean; tail: number; signal: AbortSignal },
): AsyncGenerator<LogChunk> {
  const base = {
    stdout: true,
    stderr: true,
    tail: options.tail > 0 ? options.tail : ("all" as unknown as number),
    timestamps: false,
  };
  const parser = new MuxParser();
  if (options.signal.aborted) return;
  const stream = await logStream(container, { ...base, follow: options.follow });
  const abort = () => stream.destroy();
  if (options.signal.aborted) abort();
  options.signal.addEventListener("abort", abort, { once: true });
  try {
    for await (const data of stream) yield* parser.push(data as Buffer);
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
  query: { stdout: boolean; stderr: boolean; tail: number; timestamps: boolean; follow: boolean },
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
