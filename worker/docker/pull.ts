/**
 * Image pulls with progress. Docker streams one JSON line per layer event; the totals
 * are summed over layers and reported at most five times a second, so a large pull
 * does not flood the worker's stream to the manager.
 */
import type Docker from "dockerode";
import type { Logger } from "../../lib/logger.js";
import { DriverError, type PullProgress } from "../tasks/driver.js";
import { dockerMessage, engineUnavailable, isUnreachable } from "./errors.js";

/** Minimum time between two progress callbacks. */
const PROGRESS_EVERY_MS = 200;

interface PullEvent {
  readonly id?: string;
  readonly status?: string;
  readonly progressDetail?: { current?: number; total?: number };
  readonly error?: string;
  readonly errorDetail?: { message?: string };
}

/**
 * Makes `image` present locally: returns at once when it already is, else pulls it.
 * Any failure (unknown repository or tag, unreachable registry) becomes a
 * DriverError "image-not-found" naming the image and quoting the registry.
 */
export async function pullImage(
  docker: Docker,
  image: string,
  onProgress: (progress: PullProgress) => void,
  logger?: Logger,
): Promise<void> {
  try {
    await docker.getImage(image).inspect();
    return;
  } catch (error) {
    if (isUnreachable(error)) throw engineUnavailable(error);
    // missing locally (or unreadable): pull it
  }
  const started = Date.now();
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.pull(image);
  } catch (error) {
    if (isUnreachable(error)) throw engineUnavailable(error);
    throw notFound(image, dockerMessage(error));
  }
  const layers = new Map<string, { current: number; total: number }>();
  let lastSent = 0;
  let lastMessage = `pulling ${image}`;
  const report = (force: boolean) => {
    const now = Date.now();
    if (!force && now - lastSent < PROGRESS_EVERY_MS) return;
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
  }).catch((error: unknown) => {
    if (isUnreachable(error)) throw engineUnavailable(error);
    throw notFound(image, dockerMessage(error));
  });

  // Errors met mid-pull arrive as ordinary events, not as a failed stream.
  const failure = events.find((event) => event.error || event.errorDetail?.message);
  if (failure) throw notFound(image, failure.errorDetail?.message ?? failure.error ?? "");
  lastMessage = `pulled ${image}`;
  report(true);
  logger?.info({ image, ms: Date.now() - started }, "image pulled");
}

function notFound(image: string, words: string): DriverError {
  return new DriverError(`cannot pull image ${image}: ${words}`, "image-not-found");
}
