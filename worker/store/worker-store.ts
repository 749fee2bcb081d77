import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Level } from "level";
import { type Task, TaskSchema } from "../../gen/cube/v1/task_pb.js";
import { type TaskUpdate, TaskUpdateSchema } from "../../gen/cube/v1/worker_service_pb.js";
import { type Deferred, deferred } from "../../lib/deferred.js";
import { refuseDamagedLevelDb } from "../../lib/level-damaged.js";
import { SecretBox } from "../../lib/secret-box.js";

/** The key that seals secret env values in task records, beside worker.db (mode 0600). */
export const WORKER_SECRET_KEY_FILE = "secrets.key";

/** What the worker's call secret is derived for (see {@link WorkerStore.callSecret}). */
export const CALL_SECRET_PURPOSE = "cube worker call secret";

/** Thrown when another process holds the data directory's LevelDB lock. */
export class DataDirInUseError extends Error {
  constructor(readonly dataDir: string) {
    super(`data dir ${dataDir} is in use by another worker (its LevelDB lock is held)`);
    this.name = "DataDirInUseError";
  }
}

/** One atomic, durable change: new outbox entries, task records written or deleted. */
export interface StoreChange {
  /** Updates to keep until the manager acknowledges them; their seq must be set. */
  readonly updates?: readonly TaskUpdate[];
  /** Task records to write (whole). */
  readonly putTasks?: readonly Task[];
  /** Task ids whose records go. */
  readonly deleteTasks?: readonly string[];
  /** The seq counter after this change. */
  readonly lastSeq?: bigint;
}

/** One write: a key of the root database (sublevel prefix included) and its value, or a delete. */
type Op = { readonly key: string; readonly value?: Uint8Array };

// Writes go to the root database under abstract-level's sublevel key format ("!name!key"),
// which the sublevels read back: its per-operation sublevel handling in an array batch made
// the store ~31 % of a busy hollow worker's time (~24 % with this).
const prefix = (sublevel: string) => `!${sublevel}!`;
const OUTBOX = "outbox";
const TASKS = "tasks";
const META = "meta";
const SEQ_KEY = `${prefix(META)}seq`;
const utf8 = new TextEncoder();

/** Changes gathered for one LevelDB batch, and who waits for it. */
interface Group {
  readonly ops: Op[];
  sync: boolean;
  /** The seq counter to store with this batch. */
  lastSeq?: bigint;
  readonly written: Deferred;
}

// Seq keys sort as strings, so pad them to the width of the largest uint64.
const seqKey = (seq: bigint) => seq.toString().padStart(20, "0");

/**
 * The worker's LevelDB: its id, the update seq counter, the outbox of updates the
 * manager has not acknowledged, and one record (a `Task`) per task it holds, its secret env
 * values sealed (AES-256-GCM, key `secrets.key` beside the database), as the manager's are. Every
 * {@link commit} is one synced batch, so an update and the record it describes survive
 * a kill -9 together or not at all.
 */
export class WorkerStore {
  readonly #db: Level<string, unknown>;
  readonly #outbox;
  readonly #tasks;
  #group: Group | undefined;
  #writing: Promise<void> | undefined;

  readonly #secrets: SecretBox;
  #callSecret: string | undefined;

  private constructor(
    db: Level<string, unknown>,
    secrets: SecretBox,
    /** The worker's stable id. */
    readonly workerId: string,
    /** Highest seq ever given to an update. */
    readonly lastSeq: bigint,
  ) {
    this.#db = db;
    this.#secrets = secrets;
    this.#outbox = db.sublevel<string, Uint8Array>(OUTBOX, { valueEncoding: "view" });
    this.#tasks = db.sublevel<string, Uint8Array>(TASKS, { valueEncoding: "view" });
  }

  /**
   * Opens (creating) the store under `dataDir`; makes the worker id on first use.
   * Throws {@link DataDirInUseError} when another worker has the directory open.
   */
  static async open(dataDir: string): Promise<WorkerStore> {
    const dir = resolve(dataDir);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await refuseDamagedLevelDb(join(dir, "worker.db"));
    const db = new Level<string, unknown>(join(dir, "worker.db"));
    try {
      await db.open();
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      if (cause?.code === "LEVEL_LOCKED") throw new DataDirInUseError(dir);
      // classic-level says only "Database failed to open"; why (EROFS, EACCES, …) is its cause.
      const why = cause?.message ? `: ${cause.message}` : "";
      throw new Error(`cannot open the worker state in ${dir}: ${(error as Error).message}${why}`, {
        cause: error,
      });
    }
    const meta = db.sublevel<string, string>(META, { valueEncoding: "utf8" });
    let workerId = await meta.get("worker-id");
    if (!workerId) {
      workerId = randomUUID();
      await db.batch([{ type: "put", sublevel: meta, key: "worker-id", value: workerId }], {
        sync: true,
      });
    }
    const seq = await meta.get("seq");
    let secrets: SecretBox;
    try {
      secrets = await SecretBox.open(join(dir, WORKER_SECRET_KEY_FILE));
    } catch (error) {
      await db.close();
      throw error;
    }
    return new WorkerStore(db, secrets, workerId, seq ? BigInt(seq) : 0n);
  }

  /**
   * The secret the manager presents when it calls this worker's own port (see
   * Register.call_secret): derived from the secrets key, so the same after every restart.
   */
  get callSecret(): string {
    this.#callSecret ??= this.#secrets.derive(CALL_SECRET_PURPOSE);
    return this.#callSecret;
  }

  /** Every kept update, lowest seq first. */
  async updates(): Promise<TaskUpdate[]> {
    const out: TaskUpdate[] = [];
    for await (const value of this.#outbox.values()) out.push(fromBinary(TaskUpdateSchema, value));
    return out;
  }

  /** Every task record. */
  async tasks(): Promise<Task[]> {
    const out: Task[] = [];
    for await (const value of this.#tasks.values()) {
      const task = fromBinary(TaskSchema, value);
      const secretEnv = task.spec?.secretEnv ?? {};
      for (const [key, v] of Object.entries(secretEnv)) {
        // Records written before sealing hold plain values.
        if (SecretBox.isSealed(v)) secretEnv[key] = this.#secrets.open(v);
      }
      out.push(task);
    }
    return out;
  }

  /** The task as written: its secret env values sealed (a copy when it has any). */
  #sealed(task: Task): Task {
    const spec = task.spec;
    if (!spec || Object.keys(spec.secretEnv).length === 0) return task;
    return { ...task, spec: { ...spec, secretEnv: this.#secrets.sealAll(spec.secretEnv) } };
  }

  /**
   * Applies `change` atomically and durably (fsync) before resolving. Changes made in the
   * same event-loop turn, or while a write is in flight, share one batch (group commit):
   * a hundred RUNs arriving together cost one fsync. Batches are written, and their
   * promises resolved, in the order the changes were made.
   */
  commit(change: StoreChange): Promise<void> {
    const ops: Op[] = [];
    for (const u of change.updates ?? []) {
      ops.push({ key: prefix(OUTBOX) + seqKey(u.seq), value: toBinary(TaskUpdateSchema, u) });
    }
    for (const t of change.putTasks ?? []) {
      ops.push({ key: prefix(TASKS) + t.id, value: toBinary(TaskSchema, this.#sealed(t)) });
    }
    for (const id of change.deleteTasks ?? []) ops.push({ key: prefix(TASKS) + id });
    return this.#enqueue(ops, true, change.lastSeq);
  }

  /**
   * Drops the kept updates with these seqs; not synced on its own (sending one twice is
   * harmless), it rides along with the next batch.
   */
  deleteUpdates(seqs: readonly bigint[]): Promise<void> {
    return this.#enqueue(
      seqs.map((seq) => ({ key: prefix(OUTBOX) + seqKey(seq) })),
      false,
    );
  }

  #enqueue(ops: Op[], sync: boolean, lastSeq?: bigint): Promise<void> {
    if (ops.length === 0 && lastSeq === undefined)
      return this.#group?.written.promise ?? this.#writing ?? Promise.resolve();
    let group = this.#group;
    if (!group) {
      group = { ops: [], sync: false, written: deferred() };
      this.#group = group;
      if (!this.#writing) setImmediate(() => this.#write());
    }
    for (const op of ops) group.ops.push(op);
    group.sync ||= sync;
    // One seq counter write per batch, the highest (appends come in seq order).
    if (lastSeq !== undefined) group.lastSeq = lastSeq;
    return group.written.promise;
  }

  /** Writes the open group, then the one gathered meanwhile, until none is left. */
  #write(): void {
    const group = this.#group;
    if (!group) return;
    this.#group = undefined;
    // The chained form: the array form costs several times more per operation.
    const chained = this.#db.batch();
    for (const op of group.ops) {
      if (op.value) chained.put(op.key, op.value, { valueEncoding: "view" });
      else chained.del(op.key);
    }
    if (group.lastSeq !== undefined) {
      chained.put(SEQ_KEY, utf8.encode(group.lastSeq.toString()), { valueEncoding: "view" });
    }
    const writing = chained.write({ sync: group.sync }).then(
      () => group.written.resolve(),
      (error: Error) => group.written.reject(error),
    );
    this.#writing = writing;
    void writing.then(() => {
      this.#writing = undefined;
      this.#write();
    });
  }

  /** Closes the database (and releases the directory's lock) once pending batches are written. */
  async close(): Promise<void> {
    while (this.#group || this.#writing)
      await (this.#writing ?? this.#group?.written.promise)?.catch(() => {});
    await this.#db.close();
  }
}
