/**
 * Warm network sandboxes: containers that do nothing but hold a network namespace, started
 * ahead, so that a task without published ports joins one (`NetworkMode: container:<id>`)
 * instead of having the engine build its network while it starts. Half of a container's start
 * on Docker's bridge network is that network (the namespace, the veth pair, the libnetwork
 * prestart hook, which runs dockerd's own binary once per container: docs/performance.md,
 * rounds 11 and 14), and it falls just when a worker takes over the tasks of a lost one.
 * Kubernetes gives every pod such a sandbox (its pause container), made at the pod's start;
 * here a few are made while the engine is idle.
 *
 * A sandbox serves one container and goes with it: it is removed when that container is
 * removed or exits, never handed to another. Ready sandboxes outlive the worker's process, as
 * its tasks' containers do, and its next start takes them back. A task with published ports gets its own network
 * as before: ports cannot be added to a namespace that is already running.
 */
import { randomBytes } from "node:crypto";
import type Docker from "dockerode";
import type { Logger } from "../../lib/logger.js";
import type { Abortable } from "./deadline.js";
import { dockerMessage, dockerStatus, isNotFound } from "./errors.js";

/** Label every sandbox carries, with the id of the worker that made it. */
export const LABEL_SANDBOX = "cube.sandbox";

/** The image a worker's sandboxes run unless told otherwise: built by the set-up (images/pause). */
export const DEFAULT_SANDBOX_IMAGE = "cube/pause:local";

/** How a ready sandbox's name begins; one a container joined is renamed `<container>-net`. */
const READY_NAME_PREFIX = "cube-sandbox-";

/** How many sandboxes a worker keeps ready unless told otherwise. */
export const DEFAULT_WARM_SANDBOXES = 4;

/** The most a worker may keep ready (`cube worker --warm-sandboxes`). */
export const MAX_WARM_SANDBOXES = 64;

/** How long the engine must have started no task before the pool makes another sandbox. */
export const DEFAULT_QUIET_MS = 1000;

/** How long a removed sandbox's id is remembered, so a listing older than its removal cannot take it back. */
const REMOVED_MEMORY_MS = 60_000;

/** Memory of a sandbox: a sleeping static busybox needs a few hundred KiB. */
const SANDBOX_MEMORY_BYTES = 16 * 1024 * 1024;

/** What a pool needs. */
export interface SandboxPoolOptions {
  readonly docker: Docker;
  /** How many sandboxes to keep ready; 0 makes none. */
  readonly size: number;
  /** The image they run: its own entrypoint must sleep for good. */
  readonly image: string;
  /** Runs one engine call with the runtime request timeout (DockerDriver's). */
  readonly timed: <T>(what: string, call: (options: Abortable) => Promise<T>) => Promise<T>;
  readonly logger?: Logger;
  /** See {@link DEFAULT_QUIET_MS}. */
  readonly quietMs?: number;
}

/**
 * The sandboxes of one worker. {@link claim} is synchronous and never waits on the engine: an
 * empty pool means the task starts with its own network, as without a pool. Making sandboxes
 * waits until no task has started for a moment, so the pool never slows the burst it is for.
 */
export class SandboxPool {
  readonly #o: SandboxPoolOptions;
  readonly #quietMs: number;
  #workerId: string | undefined;
  /** Running, made by this process, handed to nobody. */
  #idle: string[] = [];
  /** Handed to a start that has not said yet whether its container joined it. */
  readonly #claimed = new Set<string>();
  /** Made by the fill under way, not yet ready. */
  #making: string | undefined;
  /** Being removed: still listed by the engine a moment, never to be taken back. */
  readonly #removing = new Set<string>();
  /** Bumped when the engine may have gone away: sandboxes made before are not trusted to run. */
  #epoch = 0;
  /** Ready until the engine was suspected gone: looked at again before the pool fills. */
  #doubted: string[] = [];
  #lastStartAt = 0;
  #timer: NodeJS.Timeout | undefined;
  /** The fill under way, if any. */
  #filling: Promise<void> | undefined;
  #closed = false;
  /** Why filling stopped until the next {@link refresh} (the image is missing, …), once logged. */
  #stalled: string | undefined;

  constructor(options: SandboxPoolOptions) {
    this.#o = options;
    this.#quietMs = options.quietMs ?? DEFAULT_QUIET_MS;
  }

  /** How many are ready now. */
  get ready(): number {
    return this.#idle.length;
  }

  /**
   * A running sandbox for the start of one container, or undefined (none ready, or pooling
   * off). The caller must {@link settle} it once its container exists or the start failed.
   */
  claim(): string | undefined {
    this.#lastStartAt = Date.now();
    const id = this.#idle.shift();
    if (id !== undefined) this.#claimed.add(id);
    this.#schedule();
    return id;
  }

  /** Notes a task start (its beginning or its end) that took no sandbox: filling waits for quiet. */
  noteStart(): void {
    this.#lastStartAt = Date.now();
  }

  /**
   * The start that claimed `id` is over. `joined`: its container holds the sandbox (it goes
   * with that container); otherwise it is removed, as it may have been half joined.
   */
  settle(id: string, joined: boolean, containerName?: string): void {
    this.#lastStartAt = Date.now();
    this.#claimed.delete(id);
    if (!joined) {
      this.discard(id);
      return;
    }
    // Named for its container (in the background, off the start's path): a sandbox is taken
    // back as ready only under a ready sandbox's name, so one a container joined is never
    // handed to another, even when that container is removed while the worker is down.
    if (containerName !== undefined) void this.#rename(id, `${containerName}-net`);
  }

  /**
   * A sandbox died (killed or removed from outside, or the engine stopping). A ready one is
   * dropped and replaced; one a start holds is left to that start, which falls back to the
   * container's own network. The caller deals with a container that joined it.
   */
  died(id: string): void {
    if (!this.#idle.includes(id)) return;
    this.discard(id);
    this.#schedule();
  }

  /** Removes a sandbox in the background; one already gone is not an error. */
  discard(id: string): void {
    this.#idle = this.#idle.filter((idle) => idle !== id);
    this.#claimed.delete(id);
    void this.#remove(id);
  }

  /**
   * The engine may have gone away: the sandboxes it ran may be gone or stopped (dockerd stops
   * every container when it stops). None is handed out until they are looked at again, by
   * {@link refresh} (the worker's re-sync when the engine is back) or before the next fill
   * (the engine only missed one call).
   */
  invalidate(): void {
    this.#epoch++;
    this.#doubted.push(...this.#idle);
    this.#idle = [];
    this.#schedule();
  }

  /**
   * Looks at what the engine holds (at the worker's start, and when the engine is back) and
   * fills the pool again once the engine is quiet. `held` gives, when asked (after the
   * engine has answered, so a start that ended meanwhile is in it), the sandboxes the worker's
   * running containers joined: those stay with them. A running one that is named as a ready
   * sandbox and nobody holds (the ready sandboxes of the worker's last run: they outlive the
   * agent, as its tasks' containers do) is taken back as ready, up to the pool's size; the
   * rest are removed.
   */
  async refresh(workerId: string, held: () => ReadonlySet<string>): Promise<void> {
    this.#workerId = workerId;
    this.#stalled = undefined;
    if (this.#closed) return;
    // Listed below like any other sandbox: taken back if they run, else removed.
    this.#doubted = [];
    const list = await this.#list(true);
    const inUse = held();
    const ready = new Set(
      list
        .filter(
          (c) =>
            c.State === "running" &&
            c.Image === this.#o.image &&
            c.Names.some((name) => name.startsWith(`/${READY_NAME_PREFIX}`)),
        )
        .map((c) => c.Id),
    );
    this.#idle = this.#idle.filter((id) => ready.has(id) && !inUse.has(id));
    const stale: string[] = [];
    for (const { Id } of list) {
      if (inUse.has(Id) || this.#claimed.has(Id) || this.#idle.includes(Id)) continue;
      if (Id === this.#making || this.#removing.has(Id)) continue;
      if (ready.has(Id) && this.#idle.length < this.#o.size) {
        this.#idle.push(Id);
      } else {
        stale.push(Id);
      }
    }
    if (stale.length > 0) {
      this.#o.logger?.info({ count: stale.length }, "removing network sandboxes no task needs");
    }
    // In the background: a restarted worker's adoption of its tasks does not wait on them.
    for (const id of stale) void this.#remove(id);
    this.#schedule();
  }

  /**
   * Stops filling. The ready sandboxes stay, as a stopping worker's containers do: the next
   * start of the worker takes them back ({@link refresh}).
   */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    // A sandbox being made is let finish (a process that exits now leaves it ready, or half
    // made for the next start to remove), so a caller that removes what is left finds it.
    await this.#filling;
  }

  #schedule(): void {
    if (this.#closed || this.#filling || this.#timer || this.#workerId === undefined) return;
    if (this.#stalled !== undefined || this.#idle.length >= this.#o.size) return;
    const wait = Math.max(0, this.#lastStartAt + this.#quietMs - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#filling = this.#fill()
        .catch((error: unknown) => {
          this.#o.logger?.warn({ err: dockerMessage(error) }, "filling the sandbox pool failed");
        })
        .finally(() => {
          this.#filling = undefined;
          this.#schedule();
        });
    }, wait);
    this.#timer.unref();
  }

  /** Makes sandboxes one at a time while the pool is short and no task has started of late. */
  async #fill(): Promise<void> {
    if (this.#doubted.length > 0 && !(await this.#verify())) return;
    while (!this.#closed && this.#stalled === undefined && this.#idle.length < this.#o.size) {
      if (Date.now() - this.#lastStartAt < this.#quietMs) return;
      const epoch = this.#epoch;
      const id = await this.#make();
      if (id === undefined) return;
      // Made before the engine went away: not trusted to run. Made after close: ready for the
      // worker's next start, as the others.
      if (epoch === this.#epoch && !this.#idle.includes(id)) this.#idle.push(id);
      else if (epoch !== this.#epoch) await this.#remove(id);
    }
  }

  /**
   * Takes the doubted sandboxes that still run back as ready (up to the pool's size) and
   * removes the rest; false when the engine cannot say (filling stops until the re-sync).
   */
  async #verify(): Promise<boolean> {
    const doubted = this.#doubted;
    this.#doubted = [];
    let running: Set<string>;
    try {
      running = new Set((await this.#list(false)).map((c) => c.Id));
    } catch (error) {
      this.#doubted.push(...doubted);
      this.#stalled = `the engine did not list the sandboxes: ${dockerMessage(error)}`;
      return false;
    }
    for (const id of doubted) {
      if (running.has(id) && this.#idle.length < this.#o.size) this.#idle.push(id);
      else void this.#remove(id);
    }
    return true;
  }

  /** Creates and starts one sandbox; undefined when it could not (logged, filling stops). */
  async #make(): Promise<string | undefined> {
    const workerId = this.#workerId ?? "";
    let id: string | undefined;
    try {
      const container = await this.#o.timed("the create of a network sandbox", (o) =>
        this.#o.docker.createContainer({ ...sandboxOptions(workerId, this.#o.image), ...o }),
      );
      id = container.id;
      this.#making = id;
      await this.#o.timed("the start of a network sandbox", (o) => container.start(o));
      return id;
    } catch (error) {
      if (id !== undefined) void this.#remove(id);
      const missing = dockerStatus(error) === 404 && /no such image/i.test(dockerMessage(error));
      this.#stalled = missing
        ? `image ${this.#o.image} is not on this engine${this.#o.image === DEFAULT_SANDBOX_IMAGE ? " (images/pause/build.sh builds it)" : ""}`
        : dockerMessage(error);
      this.#o.logger?.warn(
        { reason: this.#stalled },
        "warm network sandboxes are off until the engine is looked at again: tasks start with their own network",
      );
      return undefined;
    } finally {
      this.#making = undefined;
    }
  }

  /** This worker's sandboxes as the engine lists them: running ones, or `all`. */
  #list(all: boolean): Promise<Docker.ContainerInfo[]> {
    return this.#o.timed("the listing of this worker's network sandboxes", (o) =>
      this.#o.docker.listContainers({
        all,
        filters: { label: [`${LABEL_SANDBOX}=${this.#workerId ?? ""}`] },
        ...o,
      }),
    );
  }

  async #rename(id: string, name: string): Promise<void> {
    try {
      await this.#o.timed("the rename of a network sandbox", (o) =>
        this.#o.docker.getContainer(id).rename({ name, ...o }),
      );
    } catch (error) {
      // Gone (its container ended at once), or the name taken by a sandbox of an earlier
      // start of the same assignment: it keeps the name it has, and is still held.
      this.#o.logger?.debug({ sandbox: id, err: dockerMessage(error) }, "sandbox not renamed");
    }
  }

  async #remove(id: string): Promise<void> {
    this.#removing.add(id);
    try {
      await this.#o.timed("the removal of a network sandbox", (o) =>
        this.#o.docker.getContainer(id).remove({ force: true, v: true, ...o }),
      );
    } catch (error) {
      // Gone already, or being removed: what was asked. Anything else is left to the next
      // refresh, which removes every sandbox nothing holds.
      if (!isNotFound(error) && dockerStatus(error) !== 409) {
        this.#o.logger?.debug({ sandbox: id, err: dockerMessage(error) }, "sandbox not removed");
        this.#removing.delete(id);
        return;
      }
    }
    // Kept a while: a listing made before the removal may still be read after it.
    setTimeout(() => this.#removing.delete(id), REMOVED_MEMORY_MS).unref();
  }
}

/**
 * Docker's create body of a sandbox: on the default bridge network, confined more tightly than
 * any task (no capabilities, read-only root, 16 MiB, 8 processes, no logs), as it runs nothing
 * but its image's sleep.
 */
export function sandboxOptions(workerId: string, image: string): Docker.ContainerCreateOptions {
  const worker = workerId.replace(/[^a-zA-Z0-9]/g, "").slice(0, 8);
  return {
    // The label says whose it is; the name, that no container has joined it yet.
    name: `${READY_NAME_PREFIX}${worker}-${randomBytes(4).toString("hex")}`,
    Image: image,
    Labels: { [LABEL_SANDBOX]: workerId },
    HostConfig: {
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges"],
      ReadonlyRootfs: true,
      Memory: SANDBOX_MEMORY_BYTES,
      MemorySwap: SANDBOX_MEMORY_BYTES,
      PidsLimit: 8,
      LogConfig: { Type: "none", Config: {} },
    },
  };
}

/** The sandbox a container joined, from its HostConfig.NetworkMode ("container:<id>"). */
export function sandboxOf(networkMode: string | undefined): string | undefined {
  return networkMode?.startsWith("container:") ? networkMode.slice("container:".length) : undefined;
}
