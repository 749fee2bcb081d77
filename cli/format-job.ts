import { timestampMs } from "@bufbuild/protobuf/wkt";
import {
  type Deployment,
  DeploymentStatus,
  type Job,
  JobStatus,
  type JobVersion,
} from "../gen/cube/v1/job_pb.js";
import { formatAge } from "../lib/parse-duration.js";
import { printable } from "../lib/printable-text.js";
import type { Colors } from "./colors.js";

/** Columns of `cube job ls`. */
export const JOB_HEAD = [
  "NAME",
  "VERSION",
  "STATUS",
  "HEALTHY",
  "RUNNING",
  "PENDING",
  "FAILED",
  "DEPLOYMENT",
  "AGE",
];

/** Typical widths of the {@link JOB_HEAD} columns, for rows printed one at a time. */
export const JOB_WIDTHS = [10, 7, 9, 7, 7, 7, 6, 20, 5];

/** "RUNNING", "DEPLOYING"…, coloured when enabled. */
export function jobStatusLabel(status: JobStatus, colors: Colors): string {
  const name = JobStatus[status] ?? String(status);
  const paint =
    {
      [JobStatus.RUNNING]: colors.green,
      [JobStatus.DEPLOYING]: colors.cyan,
      [JobStatus.DEGRADED]: colors.yellow,
      [JobStatus.STOPPED]: colors.dim,
    }[status as number] ?? ((s: string) => s);
  return paint(name);
}

/** "SUCCESSFUL", "FAILED"… of a deployment status. */
export function deploymentStatusName(status: DeploymentStatus): string {
  return DeploymentStatus[status] ?? String(status);
}

/** "v2 SUCCESSFUL", "v3 RUNNING 1/3", "v2 (revert) FAILED": a deployment in one cell. */
export function deploymentLabel(d: Deployment | undefined): string {
  if (!d) return "";
  const revert = d.revert ? " (revert)" : "";
  const progress =
    d.status === DeploymentStatus.RUNNING ? ` ${d.healthy}/${d.desired} healthy` : "";
  return `v${d.version}${revert} ${deploymentStatusName(d.status)}${progress}`;
}

/** One `cube job ls` row, in the order of {@link JOB_HEAD} (text escaped as lib/printable-text.ts does). */
export function jobRow(job: Job, now: number, colors: Colors): string[] {
  const c = job.counts;
  const created = job.createdAt ? timestampMs(job.createdAt) : now;
  return [
    printable(job.spec?.name ?? ""),
    String(job.version),
    jobStatusLabel(job.status, colors),
    `${c?.healthy ?? 0}/${c?.desired ?? 0}`,
    String(c?.running ?? 0),
    String(c?.pending ?? 0),
    String(c?.failed ?? 0),
    deploymentLabel(job.deployment),
    formatAge(now - created),
  ];
}

/** Columns of `cube job history`. */
export const VERSION_HEAD = ["VERSION", "STABLE", "DEPLOYMENT", "IMAGE", "COUNT", "AGE", "REASON"];

/** One `cube job history` row; `current` marks the version the job runs (text escaped). */
export function versionRow(v: JobVersion, current: bigint, now: number): string[] {
  const created = v.createdAt ? timestampMs(v.createdAt) : now;
  return [
    `${v.version}${v.version === current ? " *" : ""}`,
    v.stable ? "yes" : "no",
    deploymentStatusName(v.deploymentStatus),
    printable(v.spec?.template?.image ?? ""),
    String(v.spec?.count ?? 0),
    formatAge(now - created),
    printable(v.statusReason),
  ];
}
