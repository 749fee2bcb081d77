import { DriverError } from "../tasks/driver.js";

/**
 * Reading dockerode's errors. docker-modem puts the HTTP status in `statusCode` and
 * Docker's own words in `json.message`; its `reason` is a per-endpoint guess that can
 * mislead (a create with a missing image says "no such container"), so never key on it.
 */

interface ModemError {
  readonly statusCode?: number;
  readonly json?: unknown;
  readonly message?: string;
}

/** The HTTP status of a Docker API error, or undefined for transport errors. */
export function dockerStatus(error: unknown): number | undefined {
  const code = (error as ModemError | undefined)?.statusCode;
  return typeof code === "number" ? code : undefined;
}

/** Docker's own message for an API error (falls back to the error's message), trimmed. */
export function dockerMessage(error: unknown): string {
  const json = (error as ModemError | undefined)?.json;
  if (json && typeof json === "object" && "message" in json) {
    const message = (json as { message: unknown }).message;
    if (typeof message === "string" && message !== "") return message.trim();
  }
  if (typeof json === "string" && json.trim() !== "") return json.trim();
  if (Buffer.isBuffer(json)) {
    const text = json.toString("utf8").trim();
    if (text !== "") return parseMessage(text);
  }
  const message = (error as ModemError | undefined)?.message ?? String(error);
  // docker-modem formats "(HTTP code 404) no such container - No such image: x "; keep Docker's part.
  const dash = message.indexOf(" - ");
  return (message.startsWith("(HTTP code") && dash >= 0 ? message.slice(dash + 3) : message).trim();
}

function parseMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === "string") return parsed.message.trim();
  } catch {
    // not JSON: Docker's plain-text answer is the message
  }
  return text;
}

/** True for "the thing is not there" (404). */
export function isNotFound(error: unknown): boolean {
  return dockerStatus(error) === 404;
}

/** Runs `action`, treating the listed HTTP statuses as success (e.g. 304 already stopped, 404 gone). */
export async function tolerating(statuses: readonly number[], action: () => Promise<unknown>) {
  try {
    await action();
  } catch (error) {
    const status = dockerStatus(error);
    if (status === undefined || !statuses.includes(status)) throw error;
  }
}

/** Error codes of a connection to the engine that could not be made or broke. */
const UNREACHABLE = new Set([
  "ENOENT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
]);

/**
 * True when the engine gave no HTTP answer at all because it could not be reached: its
 * socket is gone (ENOENT while dockerd restarts), refused, or the connection broke mid-call.
 * Not the task's fault: the worker waits for the engine and tries again.
 */
export function isUnreachable(error: unknown): boolean {
  if (dockerStatus(error) !== undefined) return false;
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === "string" && UNREACHABLE.has(code)) return true;
  const message = (error as { message?: unknown } | undefined)?.message;
  return typeof message === "string" && /socket hang up|ECONNRESET|ECONNREFUSED/.test(message);
}

/** The DriverError of a call that could not reach the engine ("engine-unavailable"). */
export function engineUnavailable(error: unknown): DriverError {
  return new DriverError(
    `the Docker engine does not answer: ${dockerMessage(error)}`,
    "engine-unavailable",
  );
}
