/**
 * One signed-in page: its clients and its live stores. A tab left hidden for a while closes
 * its streams (each holds one of the browser's six connections to the manager, shared by
 * every tab of it, and costs the manager a watcher) and resumes them, from the revision it
 * had, when it is shown again.
 */
import { type Api, createApi } from "./api.js";
import { JobStore } from "./job-store.js";
import { TaskStore } from "./task-store.js";
import { WorkerStore } from "./worker-store.js";

/** How long a hidden tab keeps its streams open (a quick look at another tab costs nothing). */
const HIDDEN_GRACE_MS = 60_000;

/** The page's clients and stores, for one token. */
export class Session {
  readonly api: Api;
  readonly tasks: TaskStore;
  readonly workers: WorkerStore;
  readonly jobs: JobStore;
  #hiddenTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(token: string, onUnauthenticated: (why: string) => void) {
    this.api = createApi(token, onUnauthenticated);
    this.tasks = new TaskStore(this.api);
    this.workers = new WorkerStore(this.api);
    this.jobs = new JobStore(this.api);
  }

  /** Starts following the manager; returns the stop. */
  start(): () => void {
    const resume = () => {
      this.tasks.start();
      this.workers.start();
    };
    const pause = () => {
      this.tasks.stop();
      this.workers.stop();
    };
    const onVisibility = () => {
      clearTimeout(this.#hiddenTimer);
      if (document.hidden) this.#hiddenTimer = setTimeout(pause, HIDDEN_GRACE_MS);
      else resume();
    };
    resume();
    document.addEventListener("visibilitychange", onVisibility);
    return () => {
      document.removeEventListener("visibilitychange", onVisibility);
      clearTimeout(this.#hiddenTimer);
      pause();
    };
  }
}
