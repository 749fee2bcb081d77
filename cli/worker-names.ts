import type { Worker } from "../gen/cube/v1/worker_pb.js";
import { CALL_TIMEOUT_MS, type ManagerClients } from "./client.js";

/**
 * Worker names by id, for tables. A name shared by several workers is not used for
 * either (their ids are shown), so a table never makes two workers look like one.
 * Any error here only costs the names: the caller shows ids instead.
 */
export async function workerNames(clients: ManagerClients): Promise<Map<string, string>> {
  let workers: Worker[];
  try {
    ({ workers } = await clients.workers.listWorkers({}, { timeoutMs: CALL_TIMEOUT_MS }));
  } catch {
    return new Map();
  }
  return namesById(workers);
}

/** The pure part of {@link workerNames}. */
export function namesById(workers: readonly Worker[]): Map<string, string> {
  const count = new Map<string, number>();
  for (const w of workers) count.set(w.name, (count.get(w.name) ?? 0) + 1);
  return new Map(
    workers.filter((w) => w.name !== "" && count.get(w.name) === 1).map((w) => [w.id, w.name]),
  );
}

/** The worker id a --worker value means: an id, a unique id prefix or a name; else as given. */
export function workerIdFor(ref: string, names: ReadonlyMap<string, string>): string {
  if (names.has(ref)) return ref;
  for (const [id, name] of names) if (name === ref) return id;
  const prefixed = [...names.keys()].filter((id) => id.startsWith(ref));
  return prefixed.length === 1 ? (prefixed[0] as string) : ref;
}
