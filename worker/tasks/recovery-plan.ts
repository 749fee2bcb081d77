import { DesiredState, type Task, TaskState } from "../../gen/cube/v1/task_pb.js";
import type { ContainerInfo } from "./driver.js";

/** What a restarted worker does about one task record or container. */
export type RecoveryAction =
  /** The container still runs: watch it again (and report RUNNING if the record lagged). */
  | { readonly kind: "adopt"; readonly task: Task; readonly container: ContainerInfo }
  /** The container ended while the worker was down: report COMPLETED or FAILED. */
  | { readonly kind: "exited"; readonly task: Task; readonly container: ContainerInfo }
  /** The record says it ran, but its container is gone: report FAILED. */
  | { readonly kind: "vanished"; readonly task: Task }
  /**
   * The worker died before the container started: drop the record, so the task is
   * missing from the inventory and the manager sends the RUN again.
   */
  | { readonly kind: "forget"; readonly task: Task; readonly container?: ContainerInfo }
  /** A STOP was under way: finish it and report COMPLETED "stopped". */
  | { readonly kind: "finish-stop"; readonly task: Task; readonly container?: ContainerInfo }
  /**
   * The task had ended and was reported, yet its container runs (`docker restart`, `docker
   * start` from outside): stop and remove it, and keep the record as it is.
   */
  | { readonly kind: "stray"; readonly task: Task; readonly container: ContainerInfo }
  /** Nothing to do: the task had already ended and was reported. */
  | { readonly kind: "keep"; readonly task: Task; readonly container?: ContainerInfo }
  /** A container cube made for an older generation, or for no known task: stop and remove it. */
  | { readonly kind: "remove"; readonly container: ContainerInfo }
  /**
   * A container carrying this worker's labels that cube did not make (neither the one the
   * record names nor one with cube's name for its labels: a `docker commit` copy, a
   * hand-made look-alike): never adopted, never removed, only named in a warning.
   */
  | { readonly kind: "foreign"; readonly container: ContainerInfo };

/**
 * Decides, from the worker's task records and the containers Docker holds under its
 * worker label, what a restarted worker must do: re-adopt what still runs, report what
 * died while it was down, and remove what should not exist — never start anything, so
 * a task never gets a second container. A task's container is the one its record names
 * (its containerId), else the one cube made for the task's generation (its name, see
 * {@link ContainerInfo.foreign}); labels alone prove nothing, as anyone can copy them.
 * Pure: the task runner carries the plan out.
 */
export function planRecovery(
  records: readonly Task[],
  containers: readonly ContainerInfo[],
): RecoveryAction[] {
  const dispose = (c: ContainerInfo): RecoveryAction =>
    c.foreign ? { kind: "foreign", container: c } : { kind: "remove", container: c };
  const actions: RecoveryAction[] = [];
  const byTask = new Map<string, ContainerInfo[]>();
  for (const c of containers) {
    const list = byTask.get(c.taskId) ?? [];
    list.push(c);
    byTask.set(c.taskId, list);
  }
  for (const task of records) {
    const mine = byTask.get(task.id) ?? [];
    byTask.delete(task.id);
    const current =
      (task.containerId !== "" &&
        mine.find((c) => c.containerId === task.containerId && c.generation === task.generation)) ||
      mine.find((c) => c.generation === task.generation && !c.foreign);
    for (const c of mine) if (c !== current) actions.push(dispose(c));
    actions.push(decide(task, current));
  }
  for (const orphans of byTask.values()) {
    for (const container of orphans) actions.push(dispose(container));
  }
  return actions;
}

function decide(task: Task, container: ContainerInfo | undefined): RecoveryAction {
  if (task.desiredState === DesiredState.STOPPED) return { kind: "finish-stop", task, container };
  if (task.state !== TaskState.SCHEDULED && task.state !== TaskState.RUNNING) {
    if (container?.running) return { kind: "stray", task, container };
    return { kind: "keep", task, container };
  }
  if (container?.running) return { kind: "adopt", task, container };
  const ran = container !== undefined && container.exitCode !== undefined;
  if (ran) return { kind: "exited", task, container };
  if (task.state === TaskState.SCHEDULED) return { kind: "forget", task, container };
  return { kind: "vanished", task };
}
