import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Level } from "level";
import {
  JobRecordSchema,
  JobVersionRecordSchema,
  NodeRecordSchema,
} from "../../gen/cube/store/v1/jobs_pb.js";
import {
  EventBlobSchema,
  TaskRecordSchema,
  TokenRecordSchema,
  WorkerRecordSchema,
} from "../../gen/cube/store/v1/records_pb.js";
import type { JobSpec } from "../../gen/cube/v1/job_pb.js";
import {
  type Task,
  type TaskEvent,
  type TaskSpec,
  TaskSpecSchema,
} from "../../gen/cube/v1/task_pb.js";
import { type Deferred, deferred } from "../../lib/deferred.js";
import { refuseDamagedLevelDb } from "../../lib/level-damaged.js";
import { SecretBox } from "../../lib/secret-box.js";
import {
  DEFAULT_EVENT_RETENTION,
  type JobRecord,
  type JobVersionRecord,
  type LoadedState,
  type NodeRecord,
  type Store,
  type TaskRecord,
  type TokenRecord,
  type WorkerRecord,
} from "./store.js";

/*
 * Key layout (keys sort as strings; revisions are zero-padded to 20 digits). Every value is
 * a message of proto/cube/store/v1/records.proto, encoded by protobuf-es:
 *   t/<created revision>/<task id>   → TaskRecord: the Task and the revisions of its events;
 *                                      t/ iterates in creation order
 *   e/<first revision>-<last rev.>   → EventBlob: the events of one group commit
 *   w/<worker id>                    → WorkerRecord: the Worker and its last update seq
 *   k/<token id>                     → TokenRecord: a bearer token and its secret's hash
 *   j/<job name>                     → JobRecord (jobs.proto): a job's spec, version, deployment
 *   v/<job name>/<version>           → JobVersionRecord: one version of a job
 *   n/<worker id>                    → NodeRecord: a worker's cordon and drain
 * Task and worker ids never contain "/" (the manager validates them).
 *
 * One blob per commit and the per-task event list inside the task record keep a placement
 * (a CREATED and a STATE_CHANGED event, one task record) at one LevelDB put plus a share
 * of the blob, instead of five.
 */

/** The key that seals secret env values at rest, beside the LevelDB files (mode 0600). */
export const SECRET_KEY_FILE = "secrets.key";

const pad = (n: bigint) => n.toString().padStart(20, "0");
const blobKey = (first: bigint, last: bigint) => `e/${pad(first)}-${pad(last)}`;

function blobRange(key: string): { first: bigint; last: bigint } {
  return { first: BigInt(key.slice(2, 22)), last: BigInt(key.slice(23, 43)) };
}

type ChainedBatch = ReturnType<Level<string, Uint8Array>["batch"]>;

/** An event blob as read: the revisions it holds and its events. */
interface EventBlob {
  readonly first: bigint;
  readonly last: bigint;
  readonly events: readonly TaskEvent[];
}

interface Batch {
  readonly tasks: Map<string, TaskRecord>;
  /** Task records to remove: id → created revision (their key). */
  readonly deletedTasks: Map<string, bigint>;
  readonly workers: Map<string, WorkerRecord>;
  readonly tokens: Map<string, TokenRecord>;
  readonly jobs: Map<string, JobRecord>;
  readonly jobVersions: Map<string, JobVersionRecord>;
  readonly nodes: Map<string, NodeRecord>;
  /** Workers to forget: their worker and node records go. */
  readonly deletedWorkers: Set<string>;
  readonly events: TaskEvent[];
  /** Settles when the batch is on disk (or failed); flush() callers await it. */
  readonly written: Deferred;
}

function newBatch(): Batch {
  return {
    tasks: new Map(),
    deletedTasks: new Map(),
    workers: new Map(),
    tokens: new Map(),
    jobs: new Map(),
    jobVersions: new Map(),
    nodes: new Map(),
    deletedWorkers: new Set(),
    events: [],
    written: deferred(),
  };
}

/**
 * The manager's {@link Store} on LevelDB (`level`), one process per directory.
 *
 * Group commit: every change queued while a write is in flight (or within the same synchronous
 * run) goes into the next single `batch(..., {sync: true})`, so a thousand RunTasks cost one
 * fsync, not a thousand. A task written several times in one batch is written once.
 */
export class LevelStore implements Store {
  readonly #db: Level<string, Uint8Array>;
  readonly #dir: string;
  readonly #retention: number;
  /** Seals secret env values before they are written, opens them when read back. */
  #secrets: SecretBox | undefined;
  /** Each spec's encoding (sealed), kept with the spec object: it is written at every change. */
  readonly #encodedSpecs = new WeakMap<TaskSpec, Uint8Array>();
  /** Revisions of each task's retained events (persisted inside its task record). */
  readonly #revisions = new Map<string, bigint[]>();
  #open: Batch | undefined;
  #inflight: Batch | undefined;
  #scheduled = false;
  #failed: Error | undefined;
  #oldest = 1n;
  #latest = 0n;
  #compacting: Promise<void> | undefined;
  /**
   * The blob read last. A watcher replaying the log pages through it 1,000 events at a
   * time, and a blob holds a whole commit (10,000 events of a RunTasks batch, ~2.4 MB):
   * read from LevelDB once per page, a replay of 300,000 events copied ~1.5 GB and took
   * the manager's RSS from 0.7 to 2 GB.
   */
  #recentBlob: EventBlob | undefined;
  /** Told how long each group commit took (the manager's metrics). */
  #onCommit: ((seconds: number) => void) | undefined;
  #onFailure: ((error: Error) => void) | undefined;

  private constructor(dir: string, retention: number) {
    this.#dir = dir;
    this.#retention = Math.max(1, retention);
    this.#db = new Level<string, Uint8Array>(dir, {
      keyEncoding: "utf8",
      valueEncoding: "view",
      // Bigger memtables: fewer level-0 files and compactions under bursts of writes.
      writeBufferSize: 16 * 1024 * 1024,
    });
  }

  /**
   * Opens (creating when missing) the store in `dir`. Fails with a clear message when another
   * process holds the directory. `eventRetention`: events kept before the oldest are dropped.
   */
  static async open(dir: string, options: { eventRetention?: number } = {}): Promise<LevelStore> {
    await refuseDamagedLevelDb(dir);
    const store = new LevelStore(dir, options.eventRetention ?? DEFAULT_EVENT_RETENTION);
    try {
      await store.#db.open();
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      if (cause?.code === "LEVEL_LOCKED") {
        throw new Error(
          `data directory ${dir} is in use by another process (LevelDB lock held); one manager per directory`,
        );
      }
      throw new Error(`cannot open the store in ${dir}: ${cause?.message ?? String(error)}`);
    }
    try {
      store.#secrets = await SecretBox.open(join(dir, SECRET_KEY_FILE));
    } catch (error) {
      await store.#db.close();
      throw error;
    }
    return store;
  }

  async load(): Promise<LoadedState> {
    const [first] = await this.#db.keys({ gt: "e/", lt: "e0", limit: 1 }).all();
    const [last] = await this.#db.keys({ gt: "e/", lt: "e0", reverse: true, limit: 1 }).all();
    this.#oldest = first ? blobRange(first).first : 1n;
    this.#latest = last ? blobRange(last).last : 0n;
    const tasks: TaskRecord[] = [];
    // Replicas, stored one after another, have equal spec bytes: decoded once, one object.
    let lastBytes: Uint8Array | undefined;
    let lastSpec: TaskSpec | undefined;
    const it = this.#db.iterator({ gt: "t/", lt: "t0" });
    try {
      // The next page is read (on LevelDB's thread) while this one is decoded.
      let next = it.nextv(2000);
      for (let page = await next; page.length > 0; page = await next) {
        next = it.nextv(2000);
        for (const [key, value] of page) {
          const record = fromBinary(TaskRecordSchema, value);
          const task = record.task;
          if (!task) throw new Error(`store: task record ${key} holds no task`);
          if (record.spec.length > 0) {
            if (!lastBytes || Buffer.compare(record.spec, lastBytes) !== 0) {
              lastBytes = record.spec;
              lastSpec = this.#openSpec(fromBinary(TaskSpecSchema, record.spec));
            }
            task.spec = lastSpec;
          } else if (task.spec) {
            task.spec = this.#openSpec(task.spec);
          }
          this.#revisions.set(task.id, record.eventRevisions);
          const movedOff = Object.entries(record.movedOff);
          tasks.push({
            createdRevision: BigInt(key.slice(2, 22)),
            task,
            ...(movedOff.length > 0 && { movedOff: new Map(movedOff) }),
            ...(record.createdBy !== undefined && { createdBy: record.createdBy }),
          });
        }
      }
    } finally {
      await it.close();
    }
    const workers: WorkerRecord[] = [];
    for await (const [key, value] of this.#db.iterator({ gt: "w/", lt: "w0" })) {
      const record = fromBinary(WorkerRecordSchema, value);
      if (!record.worker) throw new Error(`store: worker record ${key} holds no worker`);
      workers.push({ lastUpdateSeq: record.lastUpdateSeq, worker: record.worker });
    }
    const tokens: TokenRecord[] = [];
    for await (const [, value] of this.#db.iterator({ gt: "k/", lt: "k0" })) {
      tokens.push(fromBinary(TokenRecordSchema, value));
    }
    const jobs: JobRecord[] = [];
    for await (const [, value] of this.#db.iterator({ gt: "j/", lt: "j0" })) {
      const record = fromBinary(JobRecordSchema, value);
      this.#openJobSpec(record.job?.spec);
      jobs.push(record);
    }
    const jobVersions: JobVersionRecord[] = [];
    for await (const [, value] of this.#db.iterator({ gt: "v/", lt: "v0" })) {
      const record = fromBinary(JobVersionRecordSchema, value);
      this.#openJobSpec(record.version?.spec);
      jobVersions.push(record);
    }
    const nodes: NodeRecord[] = [];
    for await (const [, value] of this.#db.iterator({ gt: "n/", lt: "n0" })) {
      nodes.push(fromBinary(NodeRecordSchema, value));
    }
    return { tasks, workers, tokens, jobs, jobVersions, nodes, revision: this.#latest };
  }

  putTask(record: TaskRecord): void {
    this.#batch().tasks.set(record.task.id, record);
  }

  deleteTask(id: string, createdRevision: bigint): void {
    const batch = this.#batch();
    batch.tasks.delete(id);
    batch.deletedTasks.set(id, createdRevision);
    this.#revisions.delete(id);
  }

  putEvent(event: TaskEvent): void {
    const id = event.task?.id;
    if (id !== undefined) {
      const list = this.#revisions.get(id);
      if (list) list.push(event.revision);
      else this.#revisions.set(id, [event.revision]);
    }
    this.#batch().events.push(event);
  }

  putWorker(record: WorkerRecord): void {
    const batch = this.#batch();
    batch.deletedWorkers.delete(record.worker.id);
    batch.workers.set(record.worker.id, record);
  }

  deleteWorker(id: string): void {
    const batch = this.#batch();
    batch.workers.delete(id);
    batch.nodes.delete(id);
    batch.deletedWorkers.add(id);
  }

  putToken(record: TokenRecord): void {
    this.#batch().tokens.set(record.token?.id ?? "", record);
  }

  putJob(record: JobRecord): void {
    this.#batch().jobs.set(record.job?.spec?.name ?? "", record);
  }

  putJobVersion(record: JobVersionRecord): void {
    const v = record.version;
    this.#batch().jobVersions.set(`${v?.spec?.name}/${pad(v?.version ?? 0n)}`, record);
  }

  putNode(record: NodeRecord): void {
    this.#batch().nodes.set(record.workerId, record);
  }

  flush(): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    return (this.#open ?? this.#inflight)?.written.promise ?? Promise.resolve();
  }

  async taskEvents(taskId: string, afterRevision: bigint, limit: number): Promise<TaskEvent[]> {
    const wanted = (this.#revisions.get(taskId) ?? [])
      .filter((r) => r > afterRevision && r >= this.#oldest && r <= this.#latest)
      .slice(0, limit);
    const out: TaskEvent[] = [];
    let blob: EventBlob | undefined;
    for (const revision of wanted) {
      if (!blob || revision > blob.last) blob = await this.#blobHolding(revision);
      if (!blob) continue;
      const event = blob.events[Number(revision - blob.first)];
      if (event) out.push(event);
    }
    return out;
  }

  async eventsAfter(afterRevision: bigint, limit: number): Promise<TaskEvent[]> {
    const out: TaskEvent[] = [];
    // Blobs are contiguous: every revision up to the latest is in exactly one.
    let next = afterRevision + 1n < this.#oldest ? this.#oldest : afterRevision + 1n;
    while (out.length < limit && next <= this.#latest) {
      const blob = await this.#blobHolding(next);
      if (!blob) break;
      for (const event of blob.events.slice(Number(next - blob.first))) {
        if (out.length >= limit) break;
        out.push(event);
      }
      next = blob.last + 1n;
    }
    return out;
  }

  oldestRevision(): bigint {
    return this.#oldest;
  }

  async close(): Promise<void> {
    await this.flush().catch(() => undefined);
    await this.#compacting;
    await this.#db.close();
  }

  /** The blob whose range holds `revision`, if it is still kept. */
  async #blobHolding(revision: bigint): Promise<EventBlob | undefined> {
    const recent = this.#recentBlob;
    if (recent && recent.first <= revision && revision <= recent.last) return recent;
    const [entry] = await this.#db
      .iterator({ gt: "e/", lte: `e/${pad(revision)}-~`, reverse: true, limit: 1 })
      .all();
    if (!entry) return undefined;
    const range = blobRange(entry[0]);
    if (revision > range.last) return undefined;
    this.#recentBlob = { ...range, events: fromBinary(EventBlobSchema, entry[1]).events };
    return this.#recentBlob;
  }

  #batch(): Batch {
    // After a failed write nothing more is written; flush() tells every caller.
    if (this.#failed) return newBatch();
    if (!this.#open) this.#open = newBatch();
    this.#kick();
    return this.#open;
  }

  /**
   * Starts a write once the current synchronous run ends, unless one is in flight (it will
   * follow). Not at the end of the event-loop turn: four RunTasks calls read in one turn
   * then waited for one commit together and were answered together, and their client,
   * busy with four answers at once, left the manager idle (~20 % of the time).
   */
  #kick(): void {
    if (this.#scheduled || this.#inflight) return;
    this.#scheduled = true;
    queueMicrotask(() => this.#write());
  }

  /** Calls `fn` with the time of each group commit, from its encoding to on disk. */
  observeCommits(fn: (seconds: number) => void): void {
    this.#onCommit = fn;
  }

  /**
   * Calls `fn` once, when a write fails: from then on every write is refused (the manager
   * must be restarted once the cause, a full disk say, is gone).
   */
  onFailure(fn: (error: Error) => void): void {
    this.#onFailure = fn;
  }

  #write(): void {
    this.#scheduled = false;
    const batch = this.#open;
    if (!batch) return;
    const started = performance.now();
    this.#open = undefined;
    this.#inflight = batch;
    // The chained batch: the array form costs ~7x more per operation in abstract-level 3.
    const chained = this.#db.batch();
    try {
      this.#encode(batch, chained);
    } catch (error) {
      chained.close().catch(() => undefined);
      this.#fail(batch, error as Error);
      return;
    }
    chained.write({ sync: true }).then(
      () => {
        this.#onCommit?.((performance.now() - started) / 1000);
        this.#inflight = undefined;
        const last = batch.events.at(-1);
        if (last) this.#latest = last.revision;
        batch.written.resolve();
        if (this.#open) this.#kick();
        this.#maybeCompact();
      },
      (error: Error) => this.#fail(batch, error),
    );
  }

  #fail(batch: Batch, error: Error): void {
    this.#inflight = undefined;
    const first = this.#failed === undefined;
    this.#failed = new Error(`store write failed in ${this.#dir}: ${error.message}`);
    batch.written.reject(this.#failed);
    this.#open?.written.reject(this.#failed);
    this.#open = undefined;
    if (first) this.#onFailure?.(this.#failed);
  }

  #encode(batch: Batch, out: ChainedBatch): void {
    const events = batch.events;
    if (events.length > 0) {
      const blob = create(EventBlobSchema, { events: events.map(withoutSpec) });
      const first = (events[0] as TaskEvent).revision;
      out.put(blobKey(first, first + BigInt(events.length - 1)), toBinary(EventBlobSchema, blob));
    }
    for (const { task, createdRevision, movedOff, createdBy } of batch.tasks.values()) {
      let revisions = this.#revisions.get(task.id) ?? [];
      if (revisions.length > 0 && (revisions[0] as bigint) < this.#oldest) {
        revisions = revisions.filter((r) => r >= this.#oldest);
        this.#revisions.set(task.id, revisions);
      }
      const record = create(TaskRecordSchema, {
        task: task.spec ? { ...task, spec: undefined } : task,
        eventRevisions: revisions,
        spec: task.spec ? this.#specBytes(task.spec) : new Uint8Array(0),
        movedOff: movedOff ? Object.fromEntries(movedOff) : {},
        createdBy,
      });
      out.put(`t/${pad(createdRevision)}/${task.id}`, toBinary(TaskRecordSchema, record));
    }
    for (const [id, createdRevision] of batch.deletedTasks)
      out.del(`t/${pad(createdRevision)}/${id}`);
    for (const { worker, lastUpdateSeq } of batch.workers.values()) {
      const record = create(WorkerRecordSchema, { worker, lastUpdateSeq });
      out.put(`w/${worker.id}`, toBinary(WorkerRecordSchema, record));
    }
    for (const [id, record] of batch.tokens)
      out.put(`k/${id}`, toBinary(TokenRecordSchema, record));
    for (const [name, record] of batch.jobs) {
      const job = record.job;
      const sealed = job?.spec ? { ...job, spec: this.#sealJobSpec(job.spec) } : job;
      out.put(`j/${name}`, toBinary(JobRecordSchema, { ...record, job: sealed }));
    }
    for (const [key, record] of batch.jobVersions) {
      const v = record.version;
      const sealed = v?.spec ? { ...v, spec: this.#sealJobSpec(v.spec) } : v;
      out.put(`v/${key}`, toBinary(JobVersionRecordSchema, { ...record, version: sealed }));
    }
    for (const [id, record] of batch.nodes) out.put(`n/${id}`, toBinary(NodeRecordSchema, record));
    for (const id of batch.deletedWorkers) {
      out.del(`w/${id}`);
      out.del(`n/${id}`);
    }
  }

  /** A job spec as written: its template's secret env values sealed (a copy when it has any). */
  #sealJobSpec(spec: JobSpec): JobSpec {
    const t = spec.template;
    if (!t || Object.keys(t.secretEnv).length === 0) return spec;
    return { ...spec, template: { ...t, secretEnv: this.#box().sealAll(t.secretEnv) } };
  }

  /** A job spec as read: its template's secret env values opened (in place). */
  #openJobSpec(spec: JobSpec | undefined): void {
    if (spec?.template) this.#openSpec(spec.template);
  }

  /**
   * The spec as written: encoded once per spec object (a task is written again at every
   * change, its spec never changes), with secret env values sealed.
   */
  #specBytes(spec: TaskSpec): Uint8Array {
    let bytes = this.#encodedSpecs.get(spec);
    if (!bytes) {
      const sealed =
        Object.keys(spec.secretEnv).length === 0
          ? spec
          : { ...spec, secretEnv: this.#box().sealAll(spec.secretEnv) };
      bytes = toBinary(TaskSpecSchema, sealed);
      this.#encodedSpecs.set(spec, bytes);
    }
    return bytes;
  }

  /** A spec as read: secret env values opened. */
  #openSpec(spec: TaskSpec): TaskSpec {
    if (Object.keys(spec.secretEnv).length > 0) {
      try {
        spec.secretEnv = this.#box().openAll(spec.secretEnv);
      } catch (error) {
        // AES-GCM says only "unable to authenticate data": name the key and what it means.
        throw new Error(
          `cannot open the secret_env values stored in ${this.#dir} with ${join(this.#dir, SECRET_KEY_FILE)} (${(error as Error).message}): they were sealed with another key; restore the ${SECRET_KEY_FILE} that was backed up with this data`,
        );
      }
    }
    return spec;
  }

  #box(): SecretBox {
    if (!this.#secrets) throw new Error("store: the secret key is not loaded");
    return this.#secrets;
  }

  /** Drops whole blobs older than the retention, in the background, from the keys alone. */
  #maybeCompact(): void {
    const slack = BigInt(Math.ceil(this.#retention * 0.1) + 16);
    if (this.#compacting || this.#latest - this.#oldest + 1n <= BigInt(this.#retention) + slack) {
      return;
    }
    const keepFrom = this.#latest - BigInt(this.#retention) + 1n;
    this.#compacting = (async () => {
      const keys = await this.#db.keys({ gt: "e/", lt: `e/${pad(keepFrom)}` }).all();
      const chained = this.#db.batch();
      let oldest = this.#oldest;
      for (const key of keys) {
        const range = blobRange(key);
        if (range.last >= keepFrom) break;
        chained.del(key);
        oldest = range.last + 1n;
      }
      await chained.write();
      this.#oldest = oldest;
    })()
      .catch(() => undefined)
      .finally(() => {
        this.#compacting = undefined;
      });
  }
}

/** The event with its task's spec left out (a spec never changes: readers fill it in). */
function withoutSpec(event: TaskEvent): TaskEvent {
  if (!event.task?.spec) return event;
  const task: Task = { ...event.task, spec: undefined };
  return { ...event, task };
}
