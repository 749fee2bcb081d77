/**
 * The jobs, live over WatchJobs (every job first, then each again when its counts, status or
 * deployment change). Followed only while a jobs view is open: the page keeps as few streams
 * open as it can, since each holds one of the browser's six connections to the manager.
 */
import { Code } from "@connectrpc/connect";
import type { Job } from "../../gen/cube/v1/job_pb.js";
import type { Api } from "./api.js";
import { FrameNotifier } from "./frame-notifier.js";
import { type Following, follow, isFatal, type LinkState } from "./live-stream.js";

/** The live jobs of the page. */
export class JobStore extends FrameNotifier {
  readonly byName = new Map<string, Job>();
  loaded = false;
  /** The manager does not serve JobService (one that predates jobs). */
  unavailable = false;
  link: LinkState = { kind: "connecting" };
  #following: Following | undefined;
  #users = 0;

  constructor(private readonly api: Api) {
    super();
  }

  /** A view that shows jobs needs them; returns its release. The last release stops the stream. */
  use(): () => void {
    if (this.#users++ === 0) this.#start();
    return () => {
      if (--this.#users === 0) {
        this.#following?.stop();
        this.#following = undefined;
      }
    };
  }

  #start(): void {
    this.#following = follow({
      open: (signal) => this.api.jobs.watchJobs({}, { signal }),
      onMessage: (res) => {
        if (res.job?.spec) this.byName.set(res.job.spec.name, res.job);
        this.loaded = true;
        this.changed();
      },
      onState: (state) => {
        this.link = state;
        if (state.kind === "live") this.loaded = true;
        this.changed();
      },
      onError: (error) => {
        if (error.code === Code.Unimplemented) {
          this.unavailable = true;
          this.loaded = true;
          return "stop";
        }
        return isFatal(error) ? "stop" : "retry";
      },
    });
  }
}
