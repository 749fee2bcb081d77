import { create } from "@bufbuild/protobuf";
import type { Job, JobSpec, JobVersion } from "../../gen/cube/v1/job_pb.js";
import {
  DesiredState,
  type Task,
  type TaskSpec,
  TaskSpecSchema,
} from "../../gen/cube/v1/task_pb.js";
import type { TimerHandle } from "../../lib/clock.js";
import { holdsResources, isFinished } from "../../lib/task-state.js";
import type { LabelConstraint, Placement } from "../scheduler/types.js";
import type { JobRecord, JobVersionRecord } from "../store/store.js";
import { ChangeFeed } from "./change-feed.js";
import type { TaskEntry, TaskGroup } from "./task-table.js";

/** The label naming a replica's job (containers carry it too, as `cube.job`). */
export const JOB_LABEL = "cube.job";
/** The label holding the job version a replica runs. */
export const JOB_VERSION_LABEL = "cube.job.version";

/** The job a task belongs to, by its labels; undefined for a task of no job. */
export function jobOf(task: Task): { name: string; version: bigint } | undefined {
  const labels = task.spec?.labels;
  const name = labels?.[JOB_LABEL];
  if (!name) return undefined;
  const v = labels[JOB_VERSION_LABEL] ?? "";
  return { name, version: /^\d{1,19}$/.test(v) ? BigInt(v) : 0n };
}

/**
 * One job as the manager holds it: its stored state (spec, version, deployment), its
 * versions, its replicas (member tasks), and what is counted of them incrementally: the
 * replicas holding resources per worker (for spreading) and since
 * when each has been ready (for min_healthy_time). The decisions are the rules'
 * (manager/rules/job-reconciler.ts, job-ops.ts); this only keeps the books.
 */
export class JobEntry implements TaskGroup {
  /** The job as stored; replaced, never mutated (answers share old snapshots). */
  job: Job;
  /** Stopped on request: no replica wanted. */
  stopped: boolean;
  /** Every version, by number. */
  readonly versions = new Map<bigint, JobVersion>();
  /** Its replicas: wanted ones, and stopped ones until they have ended. */
  readonly members = new Map<string, TaskEntry>();
  /** Replicas holding resources, per worker id. */
  readonly peers = new Map<string, number>();
  /**
   * Since when each ready replica has been ready (the manager's clock, ms), for replicas
   * whose task has no ready_at (stored before the field existed).
   */
  readonly readySince = new Map<string, number>();
  /**
   * Replicas seen ready during the current deployment: they showed its version healthy, so
   * its healthy deadline no longer applies to them (a later blip of their worker, or a
   * restart, is not the version's failure).
   */
  readonly proven = new Set<string>();
  /** `proven` grew since the job was last stored (it is stored with the job). */
  provenDirty = false;
  /**
   * Since when this manager has watched the job (its load, ms): a healthy deadline runs only
   * while a manager watches, so a restart gives every replica the whole deadline again.
   */
  watchedSince = Number.NEGATIVE_INFINITY;
  /** Replicas that failed in a row with no stable job in between (the replace back-off). */
  failStreak = 0;
  /** Replacements of failed replicas wait until then (ms). */
  replaceAfter = 0;
  /** The timer of the next look (a min_healthy_time or deadline running out). */
  timer: TimerHandle | undefined;
  /** When that timer fires (ms). */
  timerAt: number | undefined;
  /** A reconcile is queued. */
  queued = false;
  readonly #onChange: (job: JobEntry) => void;
  readonly #specs = new Map<bigint, TaskSpec>();
  readonly #placements = new Map<bigint, Placement>();

  constructor(job: Job, stopped: boolean, onChange: (job: JobEntry) => void) {
    this.job = job;
    this.stopped = stopped;
    this.#onChange = onChange;
  }

  get name(): string {
    return this.job.spec?.name ?? "";
  }

  /** The spec of the version the job runs (its template, constraints, spread). */
  get spec(): JobSpec {
    return this.job.spec as JobSpec;
  }

  /** A task of this job: counted from now on, and told of its changes. */
  adopt(entry: TaskEntry): void {
    this.members.set(entry.task.id, entry);
    entry.group = this;
    const t = entry.task;
    if (holdsResources(t.state) && t.workerId) this.#count(t.workerId, 1);
  }

  /** A stopped replica that ended: no longer counted. */
  forget(id: string): void {
    const entry = this.members.get(id);
    if (!entry) return;
    this.members.delete(id);
    this.readySince.delete(id);
    this.proven.delete(id);
    const t = entry.task;
    if (holdsResources(t.state) && t.workerId) this.#count(t.workerId, -1);
    if (entry.group === this) entry.group = undefined;
  }

  taskChanged(_entry: TaskEntry, before: Task | undefined, after: Task): void {
    const heldBefore = before !== undefined && holdsResources(before.state) && before.workerId;
    const heldAfter = holdsResources(after.state) && after.workerId;
    if (heldBefore && !(heldAfter && before.workerId === after.workerId)) {
      this.#count(before.workerId, -1);
    }
    if (heldAfter && !(heldBefore && before?.workerId === after.workerId)) {
      this.#count(after.workerId, 1);
    }
    this.#onChange(this);
  }

  placementOf(entry: TaskEntry): Placement {
    return this.placement(jobOf(entry.task)?.version ?? this.job.version);
  }

  #count(workerId: string, delta: 1 | -1): void {
    const n = (this.peers.get(workerId) ?? 0) + delta;
    if (n > 0) this.peers.set(workerId, n);
    else this.peers.delete(workerId);
  }

  /**
   * The spec of a replica of `version`: the version's template named after it (the job's
   * name when it has none) and labelled with the job and version. One object per version,
   * so replicas share it (in memory and in the store).
   */
  replicaSpec(version: bigint): TaskSpec {
    let spec = this.#specs.get(version);
    if (!spec) {
      const template = this.versions.get(version)?.spec?.template ?? this.spec.template;
      const base = template ?? create(TaskSpecSchema);
      spec = {
        ...base,
        name: base.name || this.name,
        labels: {
          ...base.labels,
          [JOB_LABEL]: this.name,
          [JOB_VERSION_LABEL]: version.toString(),
        },
      };
      this.#specs.set(version, spec);
    }
    return spec;
  }

  /** Where a replica of `version` may go: its constraints and spread (host ports are the task's). */
  placement(version: bigint): Placement {
    let p = this.#placements.get(version);
    if (!p) {
      const spec = this.versions.get(version)?.spec ?? this.spec;
      const constraints: LabelConstraint[] = spec.constraints.map((c) => ({
        key: c.key,
        operator: c.operator as LabelConstraint["operator"],
        values: c.values,
      }));
      p = {
        constraints: constraints.length > 0 ? constraints : undefined,
        peers: this.peers,
        spread: spec.spread ?? true,
      };
      this.#placements.set(version, p);
    }
    return p;
  }
}

/** Every job, by name, and the feed WatchJobs follows. */
export class JobTable {
  readonly #byName = new Map<string, JobEntry>();
  /** Names of jobs whose state people see changed (WatchJobs). */
  readonly feed = new ChangeFeed();
  /** Told when a replica of a job changed (the rules queue a reconcile); set by the rules. */
  onTaskChanged: (job: JobEntry) => void = () => undefined;

  get(name: string): JobEntry | undefined {
    return this.#byName.get(name);
  }

  get size(): number {
    return this.#byName.size;
  }

  /** Every job, by name. */
  all(): JobEntry[] {
    return [...this.#byName.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** A new job (not yet stored: the caller stores it). */
  add(job: Job, stopped = false): JobEntry {
    const entry = new JobEntry(job, stopped, (j) => this.onTaskChanged(j));
    this.#byName.set(entry.name, entry);
    return entry;
  }

  /**
   * After a load: the stored jobs and versions, and each task of a job adopted as its
   * replica unless it was stopped and has ended.
   */
  load(
    jobs: readonly JobRecord[],
    versions: readonly JobVersionRecord[],
    tasks: readonly TaskEntry[],
  ): void {
    for (const record of jobs) {
      if (!record.job?.spec) continue;
      const job = this.add(record.job, record.stopped);
      for (const id of record.provenTaskIds) job.proven.add(id);
    }
    for (const { version } of versions) {
      const job = version?.spec && this.#byName.get(version.spec.name);
      if (job && version) job.versions.set(version.version, version);
    }
    for (const entry of tasks) {
      const of = jobOf(entry.task);
      const job = of && this.#byName.get(of.name);
      if (!job) continue;
      const t = entry.task;
      if (t.desiredState === DesiredState.STOPPED && isFinished(t.state)) continue;
      job.adopt(entry);
    }
  }
}
