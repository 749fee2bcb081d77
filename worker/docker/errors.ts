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
