import type { ConnectError } from "@connectrpc/connect";
import type { ConnectResponse } from "../../gen/cube/v1/worker_service_pb.js";
import type { Clock } from "../../lib/clock.js";

type Outbound = ConnectResponse["message"];

/**
 * The manager's side of one worker stream: messages queued for the worker, sent in order as
 * fast as the stream takes them. Sending never blocks the manager; the queue holds at most
 * what the manager decided for this worker (assignments are per task, acks cumulative).
 */
export class WorkerConnection {
  /** Set once the worker has registered on this stream. */
  workerId: string | undefined;
  /** Set once `registered` went down: nothing else may precede it. */
  registered = false;
  /** The worker understands batches (Register.accepts_batch): a burst goes as one frame. */
  acceptsBatch = false;
  /** When something was last sent down (for heartbeats). */
  lastSentMs: number;
  readonly #clock: Clock;
  #queue: Outbound[] = [];

  constructor(clock: Clock) {
    this.#clock = clock;
    this.lastSentMs = clock.now();
  }

  #wake: (() => void) | undefined;
  #ended = false;
  #error: ConnectError | undefined;

  get ended(): boolean {
    return this.#ended;
  }

  /** Nothing is waiting to go down (a heartbeat would be the only message). */
  get idle(): boolean {
    return this.#queue.length === 0;
  }

  /** Queues a message; ignored once the stream has ended. */
  send(message: Outbound): void {
    if (this.#ended) return;
    this.#queue.push(message);
    this.lastSentMs = this.#clock.now();
    this.#wake?.();
  }

  /** Ends the stream after what is queued, with `error` as its status when given. */
  end(error?: ConnectError): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    this.#wake?.();
  }

  /** The messages, for the handler to yield; throws the end error after the last one. */
  async *messages(signal: AbortSignal): AsyncGenerator<ConnectResponse> {
    const onAbort = () => this.end();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      for (;;) {
        if (this.#queue.length > 0) {
          const batch = this.#queue;
          this.#queue = [];
          if (this.acceptsBatch && batch.length > 1) {
            yield pack(batch);
          } else {
            for (const message of batch) yield { $typeName: "cube.v1.ConnectResponse", message };
          }
          continue;
        }
        if (this.#ended) break;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        this.#wake = undefined;
      }
      if (this.#error) throw this.#error;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }
}

/** Several messages as one frame (the worker applies them in order). */
function pack(messages: Outbound[]): ConnectResponse {
  return {
    $typeName: "cube.v1.ConnectResponse",
    message: {
      case: "batch",
      value: {
        $typeName: "cube.v1.ConnectResponseBatch",
        messages: messages.map((message) => ({ $typeName: "cube.v1.ConnectResponse", message })),
      },
    },
  };
}
