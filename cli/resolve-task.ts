import { Code, ConnectError } from "@connectrpc/connect";
import { DesiredState, type Task } from "../gen/cube/v1/task_pb.js";
import { isFinished } from "../lib/task-state.js";
import { CliError, usageError } from "./cli-error.js";
import { CALL_TIMEOUT_MS, type ManagerClients } from "./client.js";
import { ExitCode } from "./exit-codes.js";
import type { TaskFilter } from "./task-filter.js";

/** What an empty or blank task reference is refused with. */
const NO_REF = "a task id or name is required";

/**
 * Parses a task reference (an argument or --task): refuses an empty or blank one, which as
 * an id prefix would match every task (and `--task ""` would read as no filter at all), so
 * `cube stop "$UNSET"` stops nothing. Throws a plain Error, for {@link arg}.
 */
export function parseTaskRef(input: string): string {
  if (input.trim() === "") throw new Error(NO_REF);
  return input;
}

/**
 * Picks the task a person meant by `ref`, the way docker reads container references:
 * an exact id, else a unique id prefix or task name. Among tasks sharing a name, the one
 * still wanted running wins. Returns the task, or throws a CliError saying "no task" or
 * listing the candidates; a usage error for an empty or blank `ref`.
 */
export function pickTask(ref: string, tasks: readonly Task[]): Task {
  if (ref.trim() === "") throw usageError(NO_REF);
  const exact = tasks.find((t) => t.id === ref);
  if (exact) return exact;
  const byPrefix = tasks.filter((t) => t.id.startsWith(ref));
  const byName = tasks.filter((t) => t.spec?.name === ref);
  const candidates = [...new Set([...byPrefix, ...byName])];
  if (candidates.length === 1) return candidates[0] as Task;
  if (candidates.length === 0) throw new CliError(`no task ${ref}`, ExitCode.NotFound);
  const live = byName.filter(
    (t) => t.desiredState === DesiredState.RUNNING && !isFinished(t.state),
  );
  if (byPrefix.length === 0 && live.length === 1) return live[0] as Task;
  const ids = candidates
    .slice(0, 5)
    .map((t) => t.id)
    .join(", ");
  throw new CliError(
    `"${ref}" could mean ${candidates.length} tasks (${ids}${candidates.length > 5 ? ", …" : ""}): give more of the id`,
    ExitCode.Usage,
  );
}

/**
 * Every task matching `filter`, reading all pages; with the revision of the first page.
 * `signal` (Ctrl-C) cancels the calls.
 */
export async function listAllTasks(
  clients: ManagerClients,
  filter: Partial<TaskFilter> = {},
  signal?: AbortSignal,
): Promise<{ tasks: Task[]; revision: bigint }> {
  const tasks: Task[] = [];
  let revision: bigint | undefined;
  let pageToken = "";
  do {
    const page = await clients.tasks.listTasks(
      { ...filter, pageSize: 1000, pageToken },
      { timeoutMs: CALL_TIMEOUT_MS, signal },
    );
    revision ??= page.revision;
    tasks.push(...page.tasks);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return { tasks, revision: revision ?? 0n };
}

/**
 * The task `ref` names: GetTask first (the common, exact case), then a prefix or name
 * match over the list. NOT_FOUND comes out as "no task REF"; an empty or blank `ref` as a
 * usage error ({@link pickTask}). `signal` (Ctrl-C) cancels the calls.
 */
export async function resolveTask(
  clients: ManagerClients,
  ref: string,
  signal?: AbortSignal,
): Promise<Task> {
  try {
    const { task } = await clients.tasks.getTask(
      { id: ref },
      { timeoutMs: CALL_TIMEOUT_MS, signal },
    );
    if (task) return task;
  } catch (error) {
    if (
      !(error instanceof ConnectError) ||
      (error.code !== Code.NotFound && error.code !== Code.InvalidArgument)
    ) {
      throw error;
    }
  }
  const { tasks } = await listAllTasks(clients, {}, signal);
  return pickTask(ref, tasks);
}
