import { toJson } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Command } from "commander";
import { DeploymentStatus, type Job, JobSchema, JobStatus } from "../../gen/cube/v1/job_pb.js";
import {
  ApplyJobResponseSchema,
  GetJobResponseSchema,
  ListJobVersionsResponseSchema,
} from "../../gen/cube/v1/job_service_pb.js";
import { DesiredState, type Task } from "../../gen/cube/v1/task_pb.js";
import { formatDuration } from "../../lib/format-ms.js";
import { formatAge } from "../../lib/parse-duration.js";
import { printable } from "../../lib/printable-text.js";
import { JOB_LIMITS } from "../../manager/rules/validate-job.js";
import { CliError, usageError } from "../cli-error.js";
import { CALL_TIMEOUT_MS, type ManagerClients } from "../client.js";
import {
  addClientOptions,
  arg,
  type ClientOptions,
  durationOption,
  outputFormat,
  stoppedByUser,
  withManager,
} from "../client-options.js";
import { type Colors, colorsFor } from "../colors.js";
import { ExitCode } from "../exit-codes.js";
import {
  deploymentLabel,
  deploymentStatusName,
  JOB_HEAD,
  JOB_WIDTHS,
  jobRow,
  jobStatusLabel,
  VERSION_HEAD,
  versionRow,
} from "../format-job.js";
import { renderTable } from "../format-table.js";
import { shortId, stateLabel, workerLabel } from "../format-task.js";
import type { Io } from "../io.js";
import { LiveTable } from "../live-table.js";
import { parseCount } from "../parse-enum.js";
import { parseJobFile } from "../parse-job-file.js";
import { readSpecFile } from "../read-spec-file.js";
import { followWatch, watchUntil } from "../reconnect.js";
import { workerNames } from "../worker-names.js";

interface RunOptions extends ClientOptions {
  file: string;
  wait?: boolean;
  timeout: number;
}

interface WatchOptions extends ClientOptions {
  watch?: boolean;
  trunc: boolean;
}

interface WaitOptions extends ClientOptions {
  wait?: boolean;
  timeout: number;
}

/** Parses `job scale`'s count: 0 to the manager's bound on replicas. */
function parseReplicas(input: string): number {
  return parseCount(input, JOB_LIMITS.count);
}

function parseVersion(input: string): bigint {
  const text = input.replace(/^v/i, "");
  if (!/^\d{1,19}$/.test(text) || text === "0") {
    throw new Error(`"${input}" is not a version: a number from 1 (see cube job history)`);
  }
  return BigInt(text);
}

const JSON_LINE = (value: unknown) => `${JSON.stringify(value)}\n`;

/** `cube job run|ls|status|scale|stop|history|revert`: jobs, N replicas kept running. */
export function jobCommand(io: Io): Command {
  const cmd = new Command("job")
    .description("jobs: N replicas of a task kept running, rolling updates, scaling, versions")
    .addHelpText(
      "after",
      `
A job file is the JSON mapping of a JobSpec, in YAML or JSON (sizes as 256Mi, durations as 10s):

  name: web
  count: 3
  template:
    image: cube/httpd:local
    ports: [{ containerPort: 80 }]
    healthCheck: { path: /health }
    resources: { memoryBytes: 64Mi }
  update: { maxParallel: 1, minHealthyTime: 10s, healthyDeadline: 5m, autoRevert: true }
  constraints: [{ key: zone, operator: "=", values: [eu] }]

Replicas are tasks labelled cube.job=<name> (cube ps --label cube.job=web shows them).

Examples:
  cube job run -f web.yaml --wait
  cube job ls
  cube job status web
  cube job scale web 5
  cube job history web
  cube job revert web 2 --wait
  cube job stop web`,
    );

  const run = new Command("run")
    .description("create or update a job from a file; prints its version")
    .requiredOption("-f, --file <file>", "the job file (YAML or JSON; - reads stdin)")
    .option("--wait", "follow the deployment until it is healthy or failed (progress on stderr)")
    .addOption(durationOption("--timeout <duration>", "how long --wait waits", 600_000));
  addClientOptions(run)
    .addHelpText(
      "after",
      `
Applying the spec the job has changes nothing; a new template, constraints or spread make a
new version and roll it out (update.maxParallel at a time, each healthy for minHealthyTime);
count and update change in place. Exit code 3 when the deployment fails (--wait).

Examples:
  cube job run -f web.yaml
  cube job run -f web.yaml --wait --timeout 5m
  cube job run -f web.json -o json`,
    )
    .action((opts: RunOptions) => jobRun(io, opts));

  const ls = new Command("ls")
    .description("list jobs")
    .option("-w, --watch", "keep the list up to date (streamed, not polled)");
  addClientOptions(ls)
    .addHelpText(
      "after",
      `
--watch carries on when the manager restarts (an upgrade, a crash): it says so on stderr,
reads the list again and follows on from there.

Examples:
  cube job ls
  cube job ls --watch
  cube job ls -o json | jq -r '.jobs[] | select(.status != "JOB_STATUS_RUNNING") | .spec.name'`,
    )
    .action((opts: WatchOptions) => jobLs(io, opts));

  const status = new Command("status")
    .description("a job: its status, deployment, versions and replicas")
    .argument("<name>", "job name")
    .option("-w, --watch", "print a line each time the job changes")
    .option("--no-trunc", "show ids in full");
  addClientOptions(status)
    .addHelpText(
      "after",
      `
-o json prints {"job": …, "tasks": […]}; its .job.spec is the spec applied (the job file),
secret values shown as "<redacted>" (applying them back is refused: give the values).
--watch carries on when the manager restarts (saying so on stderr), with no line for a job
that did not change meanwhile.

Examples:
  cube job status web
  cube job status web --watch
  cube job status web -o json | jq .job.counts`,
    )
    .action((name: string, opts: WatchOptions) => jobStatus(io, name, opts));

  const scale = new Command("scale")
    .description("change the number of replicas (no new version)")
    .argument("<name>", "job name")
    .argument("<count>", `replicas wanted, 0-${JOB_LIMITS.count}`, arg(parseReplicas));
  addClientOptions(scale)
    .addHelpText("after", "\nExamples:\n  cube job scale web 5\n  cube job scale web 0")
    .action((name: string, count: number, opts: ClientOptions) =>
      withManager(io, opts, async ({ jobs }) => {
        const { job } = await jobs.scaleJob({ name, count }, { timeoutMs: CALL_TIMEOUT_MS });
        printJob(io, opts, job);
      }),
    );

  const stop = new Command("stop")
    .description("stop every replica (the job and its versions are kept)")
    .argument("<name>", "job name");
  addClientOptions(stop)
    .addHelpText(
      "after",
      "\nExamples:\n  cube job stop web\n  cube job run -f web.yaml   # starts it again",
    )
    .action((name: string, opts: ClientOptions) =>
      withManager(io, opts, async ({ jobs }) => {
        const { job } = await jobs.stopJob({ name }, { timeoutMs: CALL_TIMEOUT_MS });
        printJob(io, opts, job);
      }),
    );

  const history = new Command("history")
    .description("a job's versions, newest first (* marks the one it runs)")
    .argument("<name>", "job name");
  addClientOptions(history)
    .addHelpText("after", "\nExamples:\n  cube job history web\n  cube job history web -o json")
    .action((name: string, opts: ClientOptions) =>
      withManager(io, opts, async ({ jobs }) => {
        const answer = await jobs.listJobVersions({ name }, { timeoutMs: CALL_TIMEOUT_MS });
        if (outputFormat(opts) === "json") {
          io.stdout.write(JSON_LINE(toJson(ListJobVersionsResponseSchema, answer)));
          return;
        }
        const { job } = await jobs.getJob({ name }, { timeoutMs: CALL_TIMEOUT_MS });
        const now = io.now();
        io.stdout.write(
          renderTable(
            VERSION_HEAD,
            answer.versions.map((v) => versionRow(v, job?.version ?? 0n, now)),
          ),
        );
      }),
    );

  const revert = new Command("revert")
    .description("go back to an earlier version, by the rolling rules")
    .argument("<name>", "job name")
    .argument("<version>", "a version of `cube job history`", arg(parseVersion))
    .option("--wait", "follow the deployment until it is healthy or failed")
    .addOption(durationOption("--timeout <duration>", "how long --wait waits", 600_000));
  addClientOptions(revert)
    .addHelpText("after", "\nExamples:\n  cube job revert web 2\n  cube job revert web 2 --wait")
    .action((name: string, version: bigint, opts: WaitOptions) =>
      withManager(io, opts, async (clients) => {
        const { job } = await clients.jobs.revertJob(
          { name, version },
          { timeoutMs: CALL_TIMEOUT_MS },
        );
        printJob(io, opts, job);
        // On stderr, so that -o json stays one document and a script still sees them.
        for (const warning of job?.deployment?.warnings ?? []) {
          io.stderr.write(`cube: warning: ${printable(warning)}\n`);
        }
        if (opts.wait && job) await waitForDeployment(io, clients, job, opts.timeout);
      }),
    );

  return cmd
    .addCommand(run)
    .addCommand(ls)
    .addCommand(status)
    .addCommand(scale)
    .addCommand(stop)
    .addCommand(history)
    .addCommand(revert);
}

function printJob(io: Io, opts: ClientOptions, job: Job | undefined): void {
  if (!job) throw new CliError("the manager answered without a job");
  if (outputFormat(opts) === "json") {
    io.stdout.write(JSON_LINE({ job: toJson(JobSchema, job) }));
    return;
  }
  io.stdout.write(renderTable(JOB_HEAD, [jobRow(job, io.now(), colorsFor(io.stdout, io.env))]));
}

async function jobRun(io: Io, opts: RunOptions): Promise<void> {
  const text = await readSpecFile(opts.file);
  let spec: ReturnType<typeof parseJobFile>;
  try {
    spec = parseJobFile(text, opts.file === "-" ? "stdin" : opts.file);
  } catch (error) {
    throw usageError((error as Error).message);
  }
  await withManager(io, opts, async (clients) => {
    const answer = await clients.jobs.applyJob({ spec }, { timeoutMs: CALL_TIMEOUT_MS });
    const job = answer.job;
    if (!job) throw new CliError("the manager answered without a job");
    if (outputFormat(opts) === "json") {
      io.stdout.write(JSON_LINE(toJson(ApplyJobResponseSchema, answer)));
    } else {
      io.stdout.write(`${job.version}\n`);
      const what = answer.newVersion
        ? `version ${job.version} applied, deploying`
        : answer.changed
          ? `version ${job.version} updated (no new version)`
          : `unchanged (version ${job.version})`;
      io.stderr.write(`job ${spec.name}: ${what}\n`);
    }
    if (opts.wait) await waitForDeployment(io, clients, job, opts.timeout);
  });
}

/**
 * Follows the job's deployment until it succeeds (exit 0), fails (exit 3, with the reason and
 * the revert if one starts) or `timeoutMs` passes (exit 6), printing progress on stderr.
 */
async function waitForDeployment(
  io: Io,
  clients: ManagerClients,
  applied: Job,
  timeoutMs: number,
): Promise<void> {
  const name = applied.spec?.name ?? "";
  const version = applied.version;
  const started = io.now();
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = AbortSignal.any([io.interrupted, timeout]);
  let last = "";
  const say = (line: string) => {
    if (line === last) return;
    last = line;
    io.stderr.write(`${formatDuration(io.now() - started).padStart(7)}  ${line}\n`);
  };
  /** One look at the job: true once the deployment is done; throws when it failed. */
  const follow = (job: Job | undefined): boolean => {
    const d = job?.deployment;
    if (!job || !d) return false;
    if (job.status === JobStatus.STOPPED) {
      throw new CliError(`job ${name} was stopped`, ExitCode.TaskFailed);
    }
    if (d.version === version && !d.revert === !applied.deployment?.revert) {
      const pending = job.counts?.pending ? `, ${job.counts.pending} pending` : "";
      say(
        `version ${version}: ${d.placed}/${d.desired} placed, ${d.healthy}/${d.desired} healthy${pending}${d.status === DeploymentStatus.RUNNING ? "" : `, ${deploymentStatusName(d.status)}`}`,
      );
      // Done once the version is deployed and the job has as many healthy replicas as it
      // wants: a count changed without a new version has a deployment that ended already.
      const wanted = job.counts?.desired ?? d.desired;
      if (d.status === DeploymentStatus.SUCCESSFUL && (job.counts?.healthy ?? 0) >= wanted) {
        io.stderr.write(
          `job ${name}: version ${version} deployed, ${wanted} replicas healthy, after ${formatDuration(io.now() - started)}\n`,
        );
        return true;
      }
      if (d.status === DeploymentStatus.FAILED || d.status === DeploymentStatus.CANCELLED) {
        throw new CliError(
          `job ${name}: deployment of version ${version} ${deploymentStatusName(d.status).toLowerCase()}: ${d.statusReason}`,
          ExitCode.TaskFailed,
        );
      }
    } else if (d.fromVersion === version && d.revert) {
      throw new CliError(
        `job ${name}: deployment of version ${version} failed; reverting to version ${d.version} (${job.statusReason})`,
        ExitCode.TaskFailed,
      );
    } else if (job.version !== version) {
      throw new CliError(
        `job ${name}: version ${version} was superseded by version ${job.version}`,
        ExitCode.TaskFailed,
      );
    }
    return false;
  };
  try {
    await watchUntil(
      io,
      clients.address,
      signal,
      () => clients.jobs.watchJobs({ name }, { signal }),
      ({ job }) => follow(job),
    );
  } catch (error) {
    if (timeout.aborted) {
      throw new CliError(
        `job ${name}: version ${version} not deployed after ${formatDuration(timeoutMs)} (${last.trim()})`,
        ExitCode.Timeout,
      );
    }
    if (stoppedByUser(io, error)) throw new CliError("interrupted", ExitCode.Interrupted);
    throw error;
  }
}

async function jobLs(io: Io, opts: WatchOptions): Promise<void> {
  const json = outputFormat(opts) === "json";
  const colors = colorsFor(io.stdout, io.env);
  const row = (j: Job) => jobRow(j, io.now(), colors);
  await withManager(io, opts, async ({ address, jobs }) => {
    if (!opts.watch) {
      const { jobs: list } = await jobs.listJobs({}, { timeoutMs: CALL_TIMEOUT_MS });
      if (json)
        io.stdout.write(
          `${JSON.stringify({ jobs: list.map((j) => toJson(JobSchema, j)) }, null, 2)}\n`,
        );
      else io.stdout.write(renderTable(JOB_HEAD, list.map(row)));
      return;
    }
    // The list, then the watch (which sends every job first); after a reconnect the same,
    // jobs that went away meanwhile leaving the table.
    const signal = io.interrupted;
    const table = json ? undefined : new LiveTable(io, JOB_HEAD, row, JOB_WIDTHS);
    try {
      await followWatch(
        io,
        address,
        signal,
        async (resumed) => {
          const { jobs: list } = await jobs.listJobs({}, { timeoutMs: CALL_TIMEOUT_MS, signal });
          const entries = list.map((j): [string, Job] => [j.spec?.name ?? "", j]);
          if (resumed) table?.replace(entries);
          else table?.start(entries);
          return jobs.watchJobs({}, { signal });
        },
        ({ job }) => {
          if (!job) return;
          if (table) table.set(job.spec?.name ?? "", job);
          else io.stdout.write(JSON_LINE(toJson(JobSchema, job)));
        },
        (text) => table?.note(text),
      );
    } catch (error) {
      if (!stoppedByUser(io, error)) throw error;
    } finally {
      table?.close();
    }
  });
}

async function jobStatus(io: Io, name: string, opts: WatchOptions): Promise<void> {
  const json = outputFormat(opts) === "json";
  const colors = colorsFor(io.stdout, io.env);
  await withManager(io, opts, async (clients) => {
    if (opts.watch) {
      const signal = io.interrupted;
      // The line printed last: the watch sends the job again when it opens, which after a
      // reconnect is not news unless the job changed meanwhile.
      let last = "";
      let resumedNow = false;
      try {
        await followWatch(
          io,
          clients.address,
          signal,
          async (resumed) => {
            // WatchJobs of a name no job has waits for one, silently: a typo would hang with
            // no word. Asked first, it is "not found", exit 4, as without --watch (and after a
            // reconnect, when the job went away meanwhile).
            await clients.jobs.getJob({ name }, { timeoutMs: CALL_TIMEOUT_MS, signal });
            resumedNow = resumed;
            return clients.jobs.watchJobs({ name }, { signal });
          },
          ({ job }) => {
            if (!job) return;
            const line = json ? JSON_LINE(toJson(JobSchema, job)) : `${statusLine(job, colors)}\n`;
            const again = resumedNow && line === last;
            resumedNow = false;
            if (again) return;
            last = line;
            io.stdout.write(line);
          },
        );
      } catch (error) {
        if (!stoppedByUser(io, error)) throw error;
      }
      return;
    }
    const answer = await clients.jobs.getJob({ name }, { timeoutMs: CALL_TIMEOUT_MS });
    if (json) {
      io.stdout.write(`${JSON.stringify(toJson(GetJobResponseSchema, answer), null, 2)}\n`);
      return;
    }
    const job = answer.job;
    if (!job) throw new CliError("the manager answered without a job");
    const [{ versions }, names] = await Promise.all([
      clients.jobs.listJobVersions({ name }, { timeoutMs: CALL_TIMEOUT_MS }),
      workerNames(clients),
    ]);
    io.stdout.write(describeJob(job, io.now(), colors));
    io.stdout.write("\nVersions:\n");
    io.stdout.write(
      renderTable(
        VERSION_HEAD,
        versions.slice(0, 10).map((v) => versionRow(v, job.version, io.now())),
      ),
    );
    io.stdout.write("\nReplicas:\n");
    io.stdout.write(
      renderTable(
        ["ID", "VERSION", "STATE", "WORKER", "AGE"],
        answer.tasks.map((t) => replicaRow(t, io.now(), colors, names, !opts.trunc)),
      ),
    );
  });
}

function statusLine(job: Job, colors: Colors): string {
  const c = job.counts;
  return [
    printable(job.spec?.name ?? ""),
    `v${job.version}`,
    jobStatusLabel(job.status, colors),
    `${c?.healthy ?? 0}/${c?.desired ?? 0} healthy`,
    deploymentLabel(job.deployment),
    printable(job.statusReason),
  ]
    .filter((x) => x)
    .join("  ");
}

function describeJob(job: Job, now: number, colors: Colors): string {
  const c = job.counts;
  const d = job.deployment;
  const lines: [string, string][] = [
    ["Name", printable(job.spec?.name ?? "")],
    ["Version", `${job.version}${job.stableVersion ? ` (stable: ${job.stableVersion})` : ""}`],
    [
      "Status",
      `${jobStatusLabel(job.status, colors)}${job.statusReason ? `: ${printable(job.statusReason)}` : ""}`,
    ],
    [
      "Replicas",
      `${c?.desired ?? 0} desired, ${c?.running ?? 0} running, ${c?.healthy ?? 0} healthy, ${c?.starting ?? 0} starting, ${c?.pending ?? 0} pending, ${c?.failed ?? 0} failed`,
    ],
    ["Image", printable(job.spec?.template?.image ?? "")],
  ];
  if (d) {
    const since = d.startedAt ? ` ${formatAge(now - timestampMs(d.startedAt))} ago` : "";
    lines.push([
      "Deployment",
      `version ${d.version}${d.fromVersion ? ` from ${d.fromVersion}` : ""}${d.revert ? " (revert)" : ""}: ${deploymentStatusName(d.status)}, ${d.healthy}/${d.desired} healthy, started${since}${d.statusReason ? ` (${printable(d.statusReason)})` : ""}`,
    ]);
    for (const warning of d.warnings) lines.push(["Warning", colors.yellow(printable(warning))]);
  }
  return lines.map(([k, v]) => `${`${k}:`.padEnd(12)}${v}\n`).join("");
}

function replicaRow(
  task: Task,
  now: number,
  colors: Colors,
  names: ReadonlyMap<string, string>,
  full: boolean,
): string[] {
  const created = task.createdAt ? timestampMs(task.createdAt) : now;
  const stopping = task.desiredState === DesiredState.STOPPED ? colors.dim(" (stopping)") : "";
  return [
    printable(shortId(task.id, full)),
    printable(task.spec?.labels["cube.job.version"] ?? ""),
    `${stateLabel(task, colors, now)}${stopping}`,
    workerLabel(task.workerId, names, full),
    formatAge(now - created),
  ];
}
