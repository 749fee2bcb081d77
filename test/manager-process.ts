/**
 * Spawning real manager (and worker) processes for the manager's integration tests: each
 * prints {"listening": "host:port"} on stdout once it serves; teardown kills what is left.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { readToken } from "../manager/api/bootstrap-tokens.js";

const ids = new WeakMap<ChildProcess, string>();

/** A spawned cube process. */
export interface Spawned {
  readonly child: ChildProcess;
  readonly address: string;
  /** The id it printed (workers), or "". */
  readonly id: string;
  /** A manager's admin token (from its data dir), or undefined. */
  readonly token: string | undefined;
  /** stderr so far (structured logs), for failure messages. */
  logs(): string;
  /** kill -9, resolving once it is gone. */
  kill9(): Promise<void>;
}

/**
 * Starts `node --import=tsx <entry>` with `env` (on top of this process's) and waits for its
 * listening line. Killed (SIGKILL) at teardown if still alive.
 */
export async function spawnCube(
  t: { teardown(fn: () => unknown): void },
  entry: string,
  env: Record<string, string>,
  timeoutMs = 20_000,
): Promise<Spawned> {
  const child = spawn(process.execPath, ["--import=tsx", entry], {
    env: { ...process.env, CUBE_LOG_LEVEL: process.env.CUBE_LOG_LEVEL ?? "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
    if (stderr.length > 2_000_000) stderr = stderr.slice(-1_000_000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
  });
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${entry} did not start in ${timeoutMs} ms:\n${stderr.slice(-3000)}`)),
      timeoutMs,
    );
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on("line", (line) => {
      try {
        // The manager prints {"listening"}, the worker {"id", "address"}.
        const parsed = JSON.parse(line) as { listening?: string; address?: string; id?: string };
        const address = parsed.listening ?? parsed.address;
        if (address) {
          clearTimeout(timer);
          ids.set(child, parsed.id ?? "");
          resolve(address);
        }
      } catch {
        // not our line
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(
        new Error(`${entry} exited (${code ?? signal}) before listening:\n${stderr.slice(-3000)}`),
      );
    });
  });
  const dataDir = env.CUBE_DATA_DIR;
  const token =
    entry.includes("manager/main.ts") && dataDir && env.CUBE_AUTH !== "0"
      ? await readToken(dataDir, "admin")
      : undefined;
  return {
    child,
    address,
    token,
    id: ids.get(child) ?? "",
    logs: () => stderr,
    async kill9() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/**
 * A manager and workers as real processes, with data in `dir`. One teardown kills them all
 * (kill -9) and only then removes every container of every worker that ever ran, so
 * nothing can start a container after the clean-up.
 */
export class Cluster {
  manager: Spawned | undefined;
  readonly workers = new Map<string, Spawned>();
  readonly #workerIds = new Set<string>();
  readonly #procs: Spawned[] = [];
  /** spawnCube's own teardowns: they kill a process that never said it was listening. */
  readonly #unstarted: (() => unknown)[] = [];

  constructor(
    t: { teardown(fn: () => unknown): void; log(...values: unknown[]): void },
    readonly dir: string,
    readonly managerEnv: Record<string, string> = {},
  ) {
    t.teardown(async () => {
      await Promise.all(this.#procs.map((p) => p.kill9()));
      await Promise.all(this.#unstarted.map((kill) => kill()));
      const { removeContainers } = await import("./fixtures.js");
      let removed = 0;
      for (const id of this.#workerIds) removed += await removeContainers(`cube.worker=${id}`);
      if (removed > 0) t.log(`removed ${removed} containers`);
    });
  }

  /** Starts (or restarts, on the same data) the manager. */
  async startManager(): Promise<Spawned> {
    const m = await spawnCube(this.#quiet(), "manager/main.ts", {
      CUBE_DATA_DIR: `${this.dir}/manager`,
      CUBE_LISTEN: this.manager ? this.manager.address : "127.0.0.1:0",
      ...this.managerEnv,
    });
    this.#procs.push(m);
    this.manager = m;
    return m;
  }

  /** Starts (or restarts, on the same data) worker `name`; returns it with its id. */
  async startWorker(name: string, env: Record<string, string> = {}): Promise<Spawned> {
    if (!this.manager) throw new Error("start the manager first");
    const w = await spawnCube(this.#quiet(), "worker/main.ts", {
      CUBE_MANAGER: this.manager.address,
      CUBE_TOKEN: await readToken(`${this.dir}/manager`, "worker"),
      CUBE_LISTEN: "127.0.0.1:0",
      CUBE_NAME: name,
      CUBE_DATA_DIR: `${this.dir}/${name}`,
      ...env,
    });
    this.#workerIds.add(w.id);
    this.#procs.push(w);
    this.workers.set(name, w);
    return w;
  }

  /** Everything the processes logged, for a failing test's message. */
  logs(): string {
    return this.#procs.map((p) => p.logs()).join("\n");
  }

  /**
   * The cluster's teardown does the killing: of the processes that started with kill9(), in
   * one go, then spawnCube's own teardowns, which kill one that timed out before it listened.
   */
  #quiet(): { teardown(fn: () => unknown): void } {
    return { teardown: (fn) => this.#unstarted.push(fn) };
  }
}
