import {
  DesiredState,
  HealthStatus,
  RestartMode,
  type Task,
  type TaskEvent,
  TaskEventType,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import { formatDuration } from "../lib/format-ms.js";
import { printable } from "../lib/printable-text.js";
import { stateName } from "../lib/task-state.js";
import { ExitCode } from "./exit-codes.js";
import { portsLabel, workerLabel } from "./format-task.js";

/** How a wait ended: the exit code and one line for people. */
export interface WaitOutcome {
  exitCode: ExitCode;
  message: string;
}

/** What one event means for the person waiting. */
export interface WaitStep {
  /** Lines to print (state changes, health changes), each complete. */
  lines: string[];
  /** A progress message (image pull) that may replace the previous one in place. */
  progress?: string;
  /** Set once the wait is over. */
  outcome?: WaitOutcome;
}

/** Restarts the manager allows `on-failure` when the policy sets none (the book's limit). */
const DEFAULT_MAX_RESTARTS = 3;

/**
 * Whether the manager will start this ended task again, by its restart policy (the manager's
 * rules/restart-policy.ts: `always` without max_restarts has no limit; the count the task
 * carries once ended is already reset when it had run ready for 10 minutes).
 */
export function willRestart(task: Task): boolean {
  if (task.desiredState === DesiredState.STOPPED) return false;
  const policy = task.spec?.restartPolicy;
  const mode = policy?.mode ?? RestartMode.UNSPECIFIED;
  const max =
    policy?.maxRestarts ||
    (mode === RestartMode.ALWAYS ? Number.POSITIVE_INFINITY : DEFAULT_MAX_RESTARTS);
  if (task.restartCount >= max) return false;
  if (mode === RestartMode.ALWAYS) return true;
  return mode === RestartMode.ON_FAILURE && task.state === TaskState.FAILED;
}

/**
 * The judgement behind `cube run --wait` (and `cube stop --wait`), kept free of I/O so
 * it can be tested with made-up events: feed it the task as submitted, then every event
 * of the task; it says what to print and when the wait is over.
 *
 * Success: RUNNING, and HEALTHY too when the task has a health check (or, for a task that
 * runs to completion quickly, COMPLETED with exit code 0). Failure: FAILED with no restart
 * left, or stopped by someone. A task still PENDING at the deadline could not be placed.
 */
export class TaskWaiter {
  #last = "";
  #task: Task | undefined;

  constructor(
    private readonly options: {
      /** When the command started, ms since the epoch: elapsed times count from here. */
      startedAt: number;
      /** "running" (run --wait) or "stopped" (stop --wait). */
      goal?: "running" | "stopped";
      workerNames?: ReadonlyMap<string, string>;
    },
  ) {}

  /** The latest task seen. */
  get task(): Task | undefined {
    return this.#task;
  }

  /** Looks at the task as it is now (the RunTask answer, or a fresh GetTask). */
  start(task: Task, now: number): WaitStep {
    return printableStep(this.#see(task, now, undefined));
  }

  /** Looks at one event of the task. */
  event(event: TaskEvent, now: number): WaitStep {
    if (!event.task) return { lines: [] };
    if (event.type === TaskEventType.PROGRESS) {
      const step = this.#see(event.task, now, undefined);
      if (event.message) step.progress = `${this.#elapsed(now)}  ${event.message}`;
      return printableStep(step);
    }
    return printableStep(this.#see(event.task, now, event.message));
  }

  /** The outcome when the deadline passed first. */
  timeout(now: number, limitMs: number): WaitOutcome {
    return printableOutcome(this.#timeout(now, limitMs));
  }

  #timeout(now: number, limitMs: number): WaitOutcome {
    const task = this.#task;
    const after = formatDuration(limitMs);
    if (!task || task.state === TaskState.PENDING) {
      const why = task?.reason ? `: ${task.reason}` : "";
      return {
        exitCode: ExitCode.Timeout,
        message: `task ${task?.id ?? ""} is still PENDING after ${after}, no worker can take it${why}`,
      };
    }
    const want = this.options.goal === "stopped" ? "stopped" : "ready";
    const health =
      task.state === TaskState.RUNNING && task.spec?.healthCheck
        ? ` (health check ${task.spec.healthCheck.path} not passing yet)`
        : "";
    return {
      exitCode: ExitCode.Timeout,
      message: `task ${task.id} is not ${want} after ${after}: it is ${stateName(task.state)}${health}${this.#elapsedNote(now)}`,
    };
  }

  #see(task: Task, now: number, message: string | undefined): WaitStep {
    this.#task = task;
    const lines: string[] = [];
    const key = `${task.state}/${task.health}/${task.generation}/${task.desiredState}`;
    if (key !== this.#last) {
      this.#last = key;
      lines.push(`${this.#elapsed(now)}  ${this.#describe(task, message)}`);
    }
    const outcome =
      this.options.goal === "stopped" ? this.#stopOutcome(task) : this.#runOutcome(task, now);
    return outcome ? { lines, outcome } : { lines };
  }

  #describe(task: Task, message: string | undefined): string {
    let label = stateName(task.state);
    if (task.state === TaskState.RUNNING && task.health === HealthStatus.HEALTHY) label = "HEALTHY";
    if (task.state === TaskState.RUNNING && task.health === HealthStatus.UNHEALTHY) {
      label = "UNHEALTHY";
    }
    const details: string[] = [];
    if (task.desiredState === DesiredState.STOPPED && this.options.goal !== "stopped") {
      details.push("stop requested");
    }
    if (task.state === TaskState.SCHEDULED || task.state === TaskState.RUNNING) {
      const worker = workerLabel(task.workerId, this.options.workerNames);
      if (worker) details.push(`on ${worker}`);
    }
    if (task.state === TaskState.RUNNING && label === "RUNNING" && task.ports.length > 0) {
      details.push(portsLabel(task));
    }
    if (task.restartCount > 0 && task.state === TaskState.SCHEDULED) {
      details.push(`restart ${task.restartCount}`);
    }
    const why = message || task.reason;
    if (why && task.state !== TaskState.RUNNING) details.push(why);
    else if (message && label === "UNHEALTHY") details.push(message);
    return details.length > 0 ? `${label.padEnd(9)}  ${details.join(", ")}` : label;
  }

  #runOutcome(task: Task, now: number): WaitOutcome | undefined {
    const took = this.#elapsedNote(now);
    if (task.desiredState === DesiredState.STOPPED) {
      return { exitCode: ExitCode.TaskFailed, message: `task ${task.id} was stopped${took}` };
    }
    if (task.state === TaskState.RUNNING) {
      const checked = task.spec?.healthCheck !== undefined;
      if (!checked) return { exitCode: ExitCode.Ok, message: `task ${task.id} is RUNNING${took}` };
      if (task.health === HealthStatus.HEALTHY) {
        return { exitCode: ExitCode.Ok, message: `task ${task.id} is RUNNING and healthy${took}` };
      }
      return undefined;
    }
    if (task.state === TaskState.COMPLETED && !willRestart(task)) {
      if ((task.exitCode ?? 0) === 0) {
        return { exitCode: ExitCode.Ok, message: `task ${task.id} ran to completion${took}` };
      }
    }
    if (
      (task.state === TaskState.FAILED || task.state === TaskState.COMPLETED) &&
      !willRestart(task)
    ) {
      const why = task.reason || (task.exitCode !== undefined ? `exit code ${task.exitCode}` : "");
      return {
        exitCode: ExitCode.TaskFailed,
        message: `task ${task.id} ${task.state === TaskState.FAILED ? "FAILED" : "ended"}${why ? `: ${why}` : ""}`,
      };
    }
    return undefined;
  }

  #stopOutcome(task: Task): WaitOutcome | undefined {
    if (task.state === TaskState.COMPLETED || task.state === TaskState.FAILED) {
      const why = task.reason ? ` (${task.reason})` : "";
      return {
        exitCode: ExitCode.Ok,
        message: `task ${task.id} is ${stateName(task.state)}${why}`,
      };
    }
    return undefined;
  }

  #elapsed(now: number): string {
    return `${((now - this.options.startedAt) / 1000).toFixed(1)}s`.padStart(7);
  }

  #elapsedNote(now: number): string {
    return ` after ${formatDuration(now - this.options.startedAt)}`;
  }
}

/**
 * A step as printed: its lines quote reasons, health and progress messages a worker (or
 * Docker) wrote, and names, with their control and bidirectional characters escaped
 * (lib/printable-text.ts), for a manager that stored them as they came. No colours here.
 */
function printableStep(step: WaitStep): WaitStep {
  const out: WaitStep = { lines: step.lines.map(printable) };
  if (step.progress !== undefined) out.progress = printable(step.progress);
  if (step.outcome) out.outcome = printableOutcome(step.outcome);
  return out;
}

function printableOutcome(outcome: WaitOutcome): WaitOutcome {
  return { ...outcome, message: printable(outcome.message) };
}
