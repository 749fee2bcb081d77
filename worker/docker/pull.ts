/**
 * Image pulls with progress. Docker streams one JSON line per layer event; the totals
 * are summed over layers and reported at most five times a second, so a large pull
 * does not flood the worker's stream to the manager. A pull that shows no progress for
 * the stall timeout is abandoned (Docker itself waits on a hung registry for good), as
 * the kubelet's image-pull-progress-deadline does.
 */
import type Docker from "dockerode";
import { formatMs } from "../../lib/format-ms.js";
import type { Logger } from "../../lib/logger.js";
import { DriverError, type PullProgress } from "../tasks/driver.js";
import { raceDeadline } from "./deadline.js";
import { dockerMessage, engineUnavailable, isUnreachable } from "./errors.js";

/** Minimum time between two progress callbacks. */
const PROGRESS_EVERY_MS = 200;

/** How long a pull may go without a progress event from the engine; the kubelet's default too. */
export const DEFAULT_PULL_STALL_MS = 60_000;

interface PullEvent {
  readonly id?: string;
  readonly status?: string;
  readonly progressDetail?: { current?: number; total?: number };
  readonly error?: string;
  readonly errorDetail?: { message?: string };
}

/** How a pull is watched. */
export interface PullOptions {
  readonly logger?: Logger;
  /** No progress event for this long abandons the pull; 0 waits for good. Default {@link DEFAULT_PULL_STALL_MS}. */
  readonly stallMs?: number;
  /** The runtime request timeout of the check whether the image is there; 0 waits for good. */
  readonly requestTimeoutMs?: number;
  /** Aborting it cancels the pull (the request closed, so the engine's download ends). */
  readonly signal?: AbortSignal;
}

/**
 * Makes `image` present locally: returns at once when it already is, else pulls it.
 * Any failure (unknown repository or tag, unreachable registry) becomes a
 * DriverError "image-not-found" naming the image and quoting the registry; a pull
 * without progress for `stallMs` is cancelled and becomes a DriverError "pull-stalled".
 * Closing the request cancels the engine's download, so a retry asks the registry again
 * (Docker 20.10 leaves the stalled connection to the registry open until an end closes it).
 */
export async function pullImage(
  docker: Docker,
  image: string,
  onProgress: (progress: PullProgress) => void,
  options: PullOptions = {},
): Promise<void> {
  const { logger, stallMs = DEFAULT_PULL_STALL_MS, requestTimeoutMs = 0, signal } = options;
  try {
    // dockerode's image inspect takes no abort signal.
    await raceDeadline(
      `the check for image ${image}`,
      requestTimeoutMs,
      docker.getImage(image).inspect(),
    );
    return;
  } catch (error) {
    // Not answered in time: a hung engine, not a missing image.
    if (error instanceof DriverError) throw error;
    if (isUnreachable(error)) throw engineUnavailable(error);
    // missing locally (or unreadable): pull it
  }
  signal?.throwIfAborted();
  const started = Date.now();
  // One signal for the whole request: it also ends a pull whose engine never answers.
  const stall = new AbortController();
  const cancelled = () => stall.abort();
  signal?.addEventListener("abort", cancelled, { once: true });
  let stallTimer: NodeJS.Timeout | undefined;
  const progressed = () => {
    if (stallMs <= 0) return;
    clearTimeout(stallTimer);
    stallTimer = setTimeout(() => stall.abort(), stallMs);
  };
  const failed = (error: unknown): unknown => {
    if (signal?.aborted) return signal.reason;
    if (stall.signal.aborted) return stalled(image, stallMs);
    if (error instanceof DriverError) return error;
    if (isUnreachable(error)) return engineUnavailable(error);
    return notFound(image, dockerMessage(error));
  };
  progressed();
  try {
    await follow(docker, image, stall.signal, progressed, onProgress).catch((error: unknown) => {
      throw failed(error);
    });
  } finally {
    clearTimeout(stallTimer);
    signal?.removeEventListener("abort", cancelled);
  }
  logger?.info({ image, ms: Date.now() - started }, "image pulled");
}

/** Pulls `image`, calling `progressed` on every engine event; throws what Docker reports. */
async function follow(
  docker: Docker,
  image: string,
  signal: AbortSignal,
  progressed: () => void,
  onProgress: (progress: PullProgress) => void,
): Promise<void> {
  const stream: NodeJS.ReadableStream = await docker.pull(image, { abortSignal: signal });
  const layers = new Map<string, { current: number; total: number }>();
  let lastSent = 0;
  let lastMessage = `pulling ${image}`;
  // An event held back by the throttle is sent when its turn comes: the last figure before
  // a stall or a slow layer is the one people see.
  let held: NodeJS.Timeout | undefined;
  const report = (force: boolean) => {
    const now = Date.now();
    const wait = PROGRESS_EVERY_MS - (now - lastSent);
    if (!force && wait > 0) {
      held ??= setTimeout(() => {
        held = undefined;
        if (!signal.aborted) report(true);
      }, wait);
      return;
    }
    clearTimeout(held);
    held = undefined;
    lastSent = now;
    let current = 0;
    let total = 0;
    for (const layer of layers.values()) {
      current += layer.current;
      total += layer.total;
    }
    onProgress({ message: lastMessage, currentBytes: BigInt(current), totalBytes: BigInt(total) });
  };

  const events = await new Promise<PullEvent[]>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (error: Error | null, output: PullEvent[]) => (error ? reject(error) : resolve(output)),
      (event: PullEvent) => {
        progressed();
        if (event.error) return;
        // Extraction reports its own current/total per layer; counting downloads only keeps
        // the figure monotonic.
        if (event.id && event.status === "Downloading" && event.progressDetail?.total) {
          const layer = layers.get(event.id) ?? { current: 0, total: 0 };
          layer.total = event.progressDetail.total;
          layer.current = event.progressDetail.current ?? layer.current;
          layers.set(event.id, layer);
        } else if (
          event.id &&
          /download complete|pull complete|already exists/i.test(event.status ?? "")
        ) {
          const layer = layers.get(event.id);
          if (layer) layer.current = layer.total;
        }
        if (event.status) lastMessage = event.id ? `${event.status} ${event.id}` : event.status;
        report(false);
      },
    );
  }).finally(() => clearTimeout(held));

  // An aborted response may just end: what it has read so far is no finished pull.
  if (signal.aborted) throw signal.reason;
  // Errors met mid-pull arrive as ordinary events, not as a failed stream.
  const failure = events.find((event) => event.error || event.errorDetail?.message);
  if (failure) throw notFound(image, failure.errorDetail?.message ?? failure.error ?? "");
  lastMessage = `pulled ${image}`;
  report(true);
}

function stalled(image: string, stallMs: number): DriverError {
  return new DriverError(
    `pulling image ${image} stalled: no progress for ${formatMs(stallMs, { roundMs: false })}, so the pull was cancelled (is the registry answering?)`,
    "pull-stalled",
  );
}

function notFound(image: string, words: string): DriverError {
  return new DriverError(`cannot pull image ${image}: ${words}`, "image-not-found");
}
