import { RestartMode, TaskState } from "../gen/cube/v1/task_pb.js";

const STATES: Record<string, TaskState> = {
  pending: TaskState.PENDING,
  scheduled: TaskState.SCHEDULED,
  running: TaskState.RUNNING,
  completed: TaskState.COMPLETED,
  failed: TaskState.FAILED,
  unknown: TaskState.UNKNOWN,
};

/**
 * Parses task states for a filter: "running", "RUNNING", "pending,failed" (any case,
 * comma-separated). Throws a message listing the valid names.
 */
export function parseStates(input: string): TaskState[] {
  return input
    .split(",")
    .map((s) =>
      s
        .trim()
        .toLowerCase()
        .replace(/^task_state_/, ""),
    )
    .filter((s) => s !== "")
    .map((s) => {
      const state = STATES[s];
      if (state === undefined) {
        throw new Error(`"${s}" is not a task state: use ${Object.keys(STATES).join(", ")}`);
      }
      return state;
    });
}

const RESTART: Record<string, RestartMode> = {
  never: RestartMode.NEVER,
  "on-failure": RestartMode.ON_FAILURE,
  always: RestartMode.ALWAYS,
};

/** Parses --restart: never, on-failure or always. */
export function parseRestartMode(input: string): RestartMode {
  const mode = RESTART[input.trim().toLowerCase().replace("_", "-")];
  if (mode === undefined) {
    throw new Error(`"${input}" is not a restart policy: use never, on-failure or always`);
  }
  return mode;
}

/** Parses a whole number within bounds (--max-restarts, --tail, --count). */
export function parseCount(input: string, max = 2 ** 32 - 1, min = 0): number {
  if (!/^\s*\d+\s*$/.test(input) || Number(input) > max || Number(input) < min) {
    throw new Error(`"${input}" is not a whole number between ${min} and ${max}`);
  }
  return Number(input);
}

/**
 * A parser of a uint32 flag from 1 that refuses 0 with `zeroMessage`. For a field the API
 * reads 0 of as "unset" (tail: the whole log; max_restarts: the default of 3), where a person
 * typing 0 means something else: refused, saying what 0 would do, rather than read either way.
 */
export function positiveCount(zeroMessage: string): (input: string) => number {
  return (input) => {
    if (/^\s*0+\s*$/.test(input)) throw new Error(zeroMessage);
    return parseCount(input, 2 ** 32 - 1, 1);
  };
}

/** The largest uint64, the bound of revisions and byte sizes. */
export const UINT64_MAX = 2n ** 64n - 1n;

/**
 * Parses a revision (uint64) for --since. Past uint64 is refused here: the request could not
 * be encoded, which would fail every call.
 */
export function parseRevision(input: string): bigint {
  if (!/^\s*\d+\s*$/.test(input)) throw new Error(`"${input}" is not a revision number`);
  const revision = BigInt(input.trim());
  if (revision > UINT64_MAX) throw new Error(`revision must be at most ${UINT64_MAX}`);
  return revision;
}
