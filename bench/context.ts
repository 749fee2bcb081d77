import type Docker from "dockerode";

/** What every scenario gets from main. */
export interface BenchContext {
  /** Small sizes, one run, no timing verdicts (CI). */
  readonly quick: boolean;
  /** Runs per scenario whose median is reported (a scenario may use fewer when quick). */
  readonly runs: number;
  /** Unique per `npm run bench`; every container made carries label cube.label.cube-bench=<runId>. */
  readonly runId: string;
  readonly docker: Docker;
  /** Write a profile (--cpu-prof) of the manager into this folder, when set. */
  readonly profileDir?: string;
  /** Size overrides from the command line (e.g. --workers=200 --tasks=20000). */
  readonly overrides: Readonly<Record<string, number>>;
  /** Other flags with a value (e.g. --modes=grpc). */
  readonly flags: Readonly<Record<string, string>>;
  /** One progress line on stderr, prefixed with the scenario's name. */
  progress(message: string): void;
}

/** Label key (as a task spec label) that marks everything a benchmark made. */
export const BENCH_LABEL = "cube-bench";
/** The same label as Docker sees it on containers (the worker prefixes spec labels). */
export const BENCH_CONTAINER_LABEL = `cube.label.${BENCH_LABEL}`;
