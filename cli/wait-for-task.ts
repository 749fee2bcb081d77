import { Code, ConnectError } from "@connectrpc/connect";
import type { Task } from "../gen/cube/v1/task_pb.js";
import { sleep } from "../lib/sleep.js";
import { CliError } from "./cli-error.js";
import { CALL_TIMEOUT_MS, type ManagerClients } from "./client.js";
import { ExitCode } from "./exit-codes.js";
import type { Io } from "./io.js";
import { isTransient, lostLine } from "./reconnect.js";
import { TaskWaiter, type WaitOutcome, type WaitStep } from "./task-waiter.js";
import { workerNames } from "./worker-names.js";

/** What {@link waitForTask} needs. */
export interface WaitOptions {
  /** The task as the manager last answered it (RunTask, StopTask). */
  task: Task;
  /** Wait for it to run (and be healthy), or to be stopped. */
  goal: "running" | "stopped";
  /** Give up after this long. */
  timeoutMs: number;
  /** When the command started: elapsed times count from here. */
  startedAt: number;
}

/**
 * Follows one task over WatchTasks (never polling) from the revision the manager
 * answered with, so no event between the answer and the watch is lost, and prints
 * progress on stderr until the goal is reached, the task fails, or time runs out. A
 * dropped stream is resumed from the last revision seen.
 */
export async function waitForTask(
  clients: ManagerClients,
  io: Io,
  options: WaitOptions,
): Promise<WaitOutcome> {
  const waiter = new TaskWaiter({
    startedAt: options.startedAt,
    goal: options.goal,
    workerNames: await workerNames(clients),
  });
  const show = progressPrinter(io);
  const first = show(waiter.start(options.task, io.now()));
  if (first) return first;

  const deadline = AbortSignal.timeout(options.timeoutMs);
  const signal = AbortSignal.any([deadline, io.interrupted]);
  let revision = options.task.revision;
  let lostOnce = false;
  let disconnected = false;
  for (;;) {
    try {
      for await (const { event } of clients.tasks.watchTasks(
        { afterRevision: revision, taskId: options.task.id },
        { signal },
      )) {
        if (!event) continue;
        revision = event.revision;
        const outcome = show(waiter.event(event, io.now()));
        if (outcome) return outcome;
      }
      // The manager ended the stream (it is shutting down): resume like after an error.
    } catch (error) {
      if (deadline.aborted) break;
      if (io.interrupted.aborted) {
        // "Carries on" would read as "keeps running" after a stop: say what it carries on with.
        const doing = options.goal === "stopped" ? "is still stopping" : "carries on";
        throw new CliError(
          `stopped waiting; task ${options.task.id} ${doing} (see \`cube ps\`)`,
          ExitCode.Interrupted,
        );
      }
      if (error instanceof ConnectError && error.code === Code.OutOfRange) {
        // Our revision fell out of the manager's history: start again from the task as it is.
        const { task } = await clients.tasks.getTask(
          { id: options.task.id },
          { timeoutMs: CALL_TIMEOUT_MS },
        );
        if (task) {
          revision = task.revision;
          const outcome = show(waiter.start(task, io.now()));
          if (outcome) return outcome;
        }
        continue;
      }
      if (!isTransient(error)) throw error;
      disconnected = true;
      if (!lostOnce) {
        io.stderr.write(`${lostLine(clients.address)}\n`);
        lostOnce = true;
      }
    }
    await sleep(500, signal);
    if (deadline.aborted) break;
    if (disconnected) {
      // A unary call tells whether the manager is back (an idle watch would not).
      try {
        const { task } = await clients.tasks.getTask({ id: options.task.id }, { signal });
        disconnected = false;
        const outcome = task ? show(waiter.start(task, io.now())) : undefined;
        if (outcome) return outcome;
      } catch {
        // Still gone: the next round tries again.
      }
    }
  }
  if (disconnected) {
    const outcome = {
      exitCode: ExitCode.Unreachable,
      message: `lost the manager at ${clients.address}, and it did not come back within ${options.timeoutMs / 1000}s`,
    };
    show({ lines: [], outcome });
    return outcome;
  }
  const outcome = waiter.timeout(io.now(), options.timeoutMs);
  show({ lines: [], outcome });
  return outcome;
}

/** Errors after which watching again may work: the connection, not the request. */

/**
 * Prints a step on stderr. On a terminal, progress (image pulls) rewrites one line in
 * place; piped, each new progress message is printed at most once a second.
 */
function progressPrinter(io: Io): (step: WaitStep) => WaitOutcome | undefined {
  const tty = io.stderr.isTTY === true;
  let pending = false;
  let lastText = "";
  let lastAt = 0;
  return (step) => {
    if (step.lines.length > 0 || step.outcome) {
      if (pending) io.stderr.write("\r\x1b[K");
      pending = false;
      for (const line of step.lines) io.stderr.write(`${line}\n`);
    }
    if (step.progress && !step.outcome && step.progress !== lastText) {
      if (tty) {
        io.stderr.write(`\r\x1b[K${step.progress}`);
        pending = true;
      } else if (io.now() - lastAt >= 1000) {
        io.stderr.write(`${step.progress}\n`);
        lastAt = io.now();
      }
      lastText = step.progress;
    }
    return step.outcome;
  };
}
