import { HealthStatus, type Task, TaskState } from "../gen/cube/v1/task_pb.js";

/**
 * Every legal move of a task's observed state, in one table. Anything not listed is
 * a bug in whoever asks for it, and {@link assertTransition} rejects it.
 *
 * The book's table, plus what cube adds:
 * - SCHEDULED → SCHEDULED and RUNNING → SCHEDULED: a restart or a move to another worker;
 * - SCHEDULED/RUNNING → PENDING: its worker went DOWN and no other worker fits yet;
 * - PENDING/SCHEDULED → COMPLETED: stopped on request before it ran (or it ran so briefly
 *   that the worker saw the exit before the start);
 * - COMPLETED/FAILED → SCHEDULED or PENDING: the restart policy starts it again;
 * - SCHEDULED/RUNNING → UNKNOWN: the manager lost contact with its worker ("disconnection is
 *   not death": the container may still run);
 * - UNKNOWN → SCHEDULED/RUNNING: contact is back and the worker still holds it (SCHEDULED
 *   also when the worker's DOWN and it is replaced elsewhere with the next generation);
 *   UNKNOWN → PENDING: replaced, but no worker fits yet; UNKNOWN → COMPLETED/FAILED: it
 *   ended while contact was lost (or was stopped on request meanwhile).
 * A lost worker that comes back still running a copy that was replaced, while no replacement
 * runs, has that copy kept: SCHEDULED on it again (at the copy's generation), then RUNNING —
 * moves the table has anyway.
 */
export const TRANSITIONS: Readonly<Record<TaskState, readonly TaskState[]>> = {
  [TaskState.UNSPECIFIED]: [TaskState.PENDING],
  [TaskState.PENDING]: [TaskState.SCHEDULED, TaskState.COMPLETED],
  [TaskState.SCHEDULED]: [
    TaskState.SCHEDULED,
    TaskState.RUNNING,
    TaskState.COMPLETED,
    TaskState.FAILED,
    TaskState.PENDING,
    TaskState.UNKNOWN,
  ],
  [TaskState.RUNNING]: [
    TaskState.COMPLETED,
    TaskState.FAILED,
    TaskState.SCHEDULED,
    TaskState.PENDING,
    TaskState.UNKNOWN,
  ],
  [TaskState.COMPLETED]: [TaskState.SCHEDULED, TaskState.PENDING],
  [TaskState.FAILED]: [TaskState.SCHEDULED, TaskState.PENDING],
  [TaskState.UNKNOWN]: [
    TaskState.SCHEDULED,
    TaskState.RUNNING,
    TaskState.PENDING,
    TaskState.COMPLETED,
    TaskState.FAILED,
  ],
};

/** Whether `from → to` is a legal move. Staying in RUNNING, COMPLETED or FAILED is not a move. */
export function canTransition(from: TaskState, to: TaskState): boolean {
  return TRANSITIONS[from]?.includes(to) ?? false;
}

/** Throws when `from → to` is not in {@link TRANSITIONS}; the message names both states. */
export function assertTransition(from: TaskState, to: TaskState): void {
  if (!canTransition(from, to)) {
    throw new Error(`illegal task state transition ${stateName(from)} → ${stateName(to)}`);
  }
}

/** Whether a task counts as ready: RUNNING, and HEALTHY when it has a health check. */
export function isReady(task: Task): boolean {
  if (task.state !== TaskState.RUNNING) return false;
  return task.spec?.healthCheck ? task.health === HealthStatus.HEALTHY : true;
}

/** Whether the container of a task in this state has ended (nothing runs for it). */
export function isFinished(state: TaskState): boolean {
  return state === TaskState.COMPLETED || state === TaskState.FAILED;
}

/**
 * Whether a task in this state holds resources on its worker. UNKNOWN does: its container
 * may still run there, and when the worker returns within its grace the task is back with
 * no window in which the room looked free. A DISCONNECTED worker gets no new tasks anyway;
 * once it is DOWN the task is replaced and its room moves with it.
 */
export function holdsResources(state: TaskState): boolean {
  return (
    state === TaskState.SCHEDULED || state === TaskState.RUNNING || state === TaskState.UNKNOWN
  );
}

/** The state's name as people read it: "RUNNING". */
export function stateName(state: TaskState): string {
  return TaskState[state] ?? `UNKNOWN(${state})`;
}
