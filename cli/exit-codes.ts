/**
 * The exit codes of `cube`, one meaning each, so scripts can tell "the task failed" from
 * "the manager is down" without reading messages.
 */
export const ExitCode = {
  /** The command did what it was asked. */
  Ok: 0,
  /** Anything else went wrong (the message says what). */
  Error: 1,
  /** The command line was wrong: unknown flag, missing argument, bad value. */
  Usage: 2,
  /** The task failed (or ended) instead of running. */
  TaskFailed: 3,
  /** No task with that id. */
  NotFound: 4,
  /** The manager could not be reached. */
  Unreachable: 5,
  /** Gave up waiting: the task stayed PENDING (could not be placed) or never got ready. */
  Timeout: 6,
  /** The manager refused the call: no token, a bad one, or one whose role does not allow it. */
  Denied: 7,
  /** Interrupted by Ctrl-C (128 + SIGINT, as shells report it). */
  Interrupted: 130,
} as const;

/** One of {@link ExitCode}'s values. */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit codes as `cube --help` prints them. */
export const EXIT_CODES_HELP = `Exit codes:
    0  ok
    1  error
    2  usage: bad flag, argument or value
    3  the task failed or was stopped (run --wait); a deployment failed (job run/revert --wait)
    4  not found: no such task, job, worker or token
    5  the manager cannot be reached
    6  timed out: the task stayed PENDING, or did not get ready (or stop) in time
    7  denied: no token, a bad one, or its role does not allow the call
  130  interrupted (Ctrl-C)`;
