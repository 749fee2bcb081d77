/**
 * Every task the manager knows, kept current in the page: listed once (ListTasks, in pages
 * of 1,000), then followed over one WatchTasks stream from the list's revision. Each event
 * carries the task as it is after the change, so applying it is a map write. After a drop
 * the watch resumes from the last revision seen; when the manager no longer keeps the events
 * since then (OUT_OF_RANGE) the page lists again. Nothing polls.
 */
import { Code, type ConnectError } from "@connectrpc/connect";
import {
  type Task,
  type TaskEvent,
  TaskEventType,
  type TaskState,
} from "../../gen/cube/v1/task_pb.js";
import type { Api } from "./api.js";
import { FrameNotifier } from "./frame-notifier.js";
import { type Following, follow, isFatal, type LinkState } from "./live-stream.js";

const PAGE_SIZE = 1000;

/** The live task table of the page. */
export class TaskStore extends FrameNotifier {
  /** Tasks by id. */
  readonly byId = new Map<string, Task>();
  /** Ids in the order the manager accepted them (oldest first). */
  readonly order: string[] = [];
  /** How many tasks are in each state, kept in step with every change. */
  readonly counts = new Map<TaskState, number>();
  /** The last revision applied: a reconnect watches from here. */
  revision = 0n;
  /** Whether the first list has arrived (before it, the page says "loading"). */
  loaded = false;
  link: LinkState = { kind: "connecting" };
  readonly #eventListeners = new Set<(event: TaskEvent) => void>();
  #following: Following | undefined;
  #mustList = true;

  constructor(private readonly api: Api) {
    super();
  }

  /** Starts (or resumes, from the last revision) following the manager. */
  start(): void {
    if (this.#following) return;
    this.#following = follow<TaskEvent>({
      open: (signal, ready) => this.#open(signal, ready),
      onMessage: (event) => this.#apply(event),
      onState: (state) => {
        this.link = state;
        this.changed();
      },
      onError: (error: ConnectError) => {
        if (isFatal(error)) return "stop";
        // The events since our revision are gone: list again, then watch from there.
        if (error.code === Code.OutOfRange) this.#mustList = true;
        return "retry";
      },
    });
  }

  /** Stops following (a hidden tab); {@link start} resumes without listing again. */
  stop(): void {
    this.#following?.stop();
    this.#following = undefined;
  }

  /** Hears every event as it is applied (the task detail's live history). */
  onEvent(listener: (event: TaskEvent) => void): () => void {
    this.#eventListeners.add(listener);
    return () => this.#eventListeners.delete(listener);
  }

  async *#open(signal: AbortSignal, ready: () => void): AsyncGenerator<TaskEvent> {
    if (this.#mustList) {
      await this.#list(signal);
      this.#mustList = false;
      ready();
    }
    for await (const res of this.api.tasks.watchTasks(
      { afterRevision: this.revision },
      { signal },
    )) {
      if (res.event) yield res.event;
    }
  }

  async #list(signal: AbortSignal): Promise<void> {
    let pageToken = "";
    let revision: bigint | undefined;
    const seen = new Set<string>();
    do {
      const page = await this.api.tasks.listTasks({ pageSize: PAGE_SIZE, pageToken }, { signal });
      // The first page's revision: watching from there replays whatever changed while the
      // later pages were read (the revision check in #put drops what a page already had).
      revision ??= page.revision;
      for (const task of page.tasks) {
        seen.add(task.id);
        this.#put(task, true);
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    // A relist after OUT_OF_RANGE replaces the table: nothing from before stays behind.
    if (this.order.length !== seen.size) {
      for (const id of [...this.byId.keys()]) if (!seen.has(id)) this.#remove(id);
    }
    this.revision = revision ?? 0n;
    this.loaded = true;
    this.changed();
  }

  #apply(event: TaskEvent): void {
    // Garbage collected: gone from the manager, so from the table too.
    if (event.type === TaskEventType.DELETED && event.task) this.#remove(event.task.id);
    else if (event.task) this.#put(event.task, false);
    if (event.revision > this.revision) this.revision = event.revision;
    for (const listener of this.#eventListeners) listener(event);
    this.changed();
  }

  /** Sets a task unless what we hold is newer; `listed`: from a list page (always newest). */
  #put(task: Task, listed: boolean): void {
    const old = this.byId.get(task.id);
    if (old) {
      if (!listed && task.revision < old.revision) return;
      this.counts.set(old.state, (this.counts.get(old.state) ?? 1) - 1);
    } else {
      this.order.push(task.id);
    }
    this.byId.set(task.id, task);
    this.counts.set(task.state, (this.counts.get(task.state) ?? 0) + 1);
  }

  #remove(id: string): void {
    const old = this.byId.get(id);
    if (!old) return;
    this.byId.delete(id);
    this.counts.set(old.state, (this.counts.get(old.state) ?? 1) - 1);
    const i = this.order.indexOf(id);
    if (i >= 0) this.order.splice(i, 1);
  }
}
