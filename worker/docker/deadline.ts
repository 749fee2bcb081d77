import { formatDuration } from "../../lib/format-ms.js";
import { DriverError } from "../tasks/driver.js";
import { dockerStatus } from "./errors.js";

/**
 * How long one call to the engine may go unanswered (`cube worker --runtime-request-timeout`):
 * 2 minutes, as the kubelet's --runtime-request-timeout. Docker itself waits for good.
 */
export const DEFAULT_RUNTIME_REQUEST_TIMEOUT_MS = 120_000;

/** What dockerode takes in a call's options to abort its HTTP request. */
export interface Abortable {
  abortSignal?: AbortSignal;
}

/**
 * Runs one engine call with a deadline of `ms` (0: none): `call` spreads the options it is
 * handed into dockerode's, whose HTTP request is then aborted when the deadline passes, and
 * the call fails with a DriverError "engine-timeout" naming `what` ("the start of container
 * x"). Not for streams (events, logs, stats): the abort would end them too.
 */
export async function withDeadline<T>(
  what: string,
  ms: number,
  call: (options: Abortable) => Promise<T>,
): Promise<T> {
  if (ms <= 0) return call({});
  const signal = AbortSignal.timeout(ms);
  try {
    return await call({ abortSignal: signal });
  } catch (error) {
    // An HTTP answer (404, 409…) that came in time stays what it is.
    if (signal.aborted && dockerStatus(error) === undefined) throw engineTimeout(what, ms);
    throw error;
  }
}

/**
 * {@link withDeadline} for a dockerode call that takes no abort signal (an image's inspect):
 * past `ms` the caller moves on with the same DriverError, and the request is left to end
 * when the engine answers, or its socket closes.
 */
export async function raceDeadline<T>(what: string, ms: number, call: Promise<T>): Promise<T> {
  if (ms <= 0) return call;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(engineTimeout(what, ms)), ms);
  });
  // The call may still fail after the deadline: nobody listens then.
  call.catch(() => undefined);
  try {
    return await Promise.race([call, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The DriverError of a call the engine did not answer in time. */
export function engineTimeout(what: string, ms: number): DriverError {
  return new DriverError(
    `docker did not answer ${what} within ${formatDuration(ms)}`,
    "engine-timeout",
  );
}
