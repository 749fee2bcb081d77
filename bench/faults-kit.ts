/**
 * The fault suite's tools: real manager and worker processes (optionally inside a network
 * namespace), clients with the manager's admin token, container counts from the real Docker
 * engine, a cuttable socket in front of the engine, and a network namespace with a veth pair
 * on a private link-local /30 that the suite makes itself and always removes.
 */
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { closeSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { unlink } from "node:fs/promises";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type Docker from "dockerode";
import { NodeService } from "../gen/cube/v1/node_service_pb.js";
import type { Task } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { WorkerService } from "../gen/cube/v1/worker_service_pb.js";
import { bearer } from "../lib/rpc/client.js";
import { readToken } from "../manager/api/bootstrap-tokens.js";
import { removeWorkerContainers } from "../worker/docker/remove-labelled.js";
import { deferCleanup } from "./cleanup.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const run = promisify(execFile);

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A cube process the suite spawned. */
export interface Proc {
  readonly name: string;
  readonly pid: number;
  /** Where it listens (the manager's API, the worker's port). */
  readonly address: string;
  /** A worker's id, else "". */
  readonly id: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  signal(signal: NodeJS.Signals): void;
  kill9(): Promise<void>;
  /** The end of its log (stderr), for error messages. */
  logTail(bytes?: number): string;
}

/**
 * Spawns `node --import=tsx <script>` (inside `netns` through `ip netns exec`, which execs
 * in place: the pid is node's, so signals reach it) with the environment without inherited
 * CUBE_* settings plus `env`; resolves once it printed its JSON hello line.
 */
export async function spawnProc(
  name: string,
  script: string,
  env: Record<string, string>,
  logDir: string,
  netns?: string,
): Promise<Proc> {
  mkdirSync(logDir, { recursive: true });
  const logPath = join(logDir, `${name}-${Date.now()}.log`);
  const fd = openSync(logPath, "a");
  const node = [process.execPath, "--max-semi-space-size=64", "--import=tsx", script];
  const [cmd, ...args] = netns ? ["ip", "netns", "exec", netns, ...node] : node;
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("CUBE_")),
  );
  const child = spawn(cmd as string, args, {
    cwd: ROOT,
    env: { ...base, CUBE_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", fd],
  });
  closeSync(fd);
  const alive = () => child.exitCode === null && child.signalCode === null;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const kill9 = async () => {
    if (alive()) {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
    }
    await exited;
  };
  const undo = deferCleanup(`${name} (pid ${child.pid})`, kill9);
  void exited.then(() => undo());
  const logTail = (bytes = 4000) => {
    try {
      return readFileSync(logPath, "utf8").slice(-bytes);
    } catch {
      return "";
    }
  };
  const hello = await new Promise<{ id?: string; address?: string; listening?: string }>(
    (resolve, reject) => {
      let buffer = "";
      const timer = setTimeout(() => {
        void kill9();
        reject(new Error(`${name} did not start in 60 s:\n${logTail()}`));
      }, 60_000);
      child.stdout?.setEncoding("utf8").on("data", (s: string) => {
        buffer += s;
        for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          try {
            const parsed = JSON.parse(line) as { address?: string; listening?: string };
            if (parsed.address || parsed.listening) {
              clearTimeout(timer);
              resolve(parsed);
            }
          } catch {
            // not the hello line
          }
        }
      });
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${code ?? signal}) before listening:\n${logTail()}`));
      });
    },
  );
  return {
    name,
    pid: child.pid as number,
    address: (hello.listening ?? hello.address) as string,
    id: hello.id ?? "",
    exited,
    alive,
    signal: (s) => {
      if (alive()) child.kill(s);
    },
    kill9,
    logTail,
  };
}

/** A manager and workers as real processes, data in `dir`, clients with the admin token. */
export class FaultCluster {
  manager: Proc | undefined;
  readonly workers = new Map<string, Proc>();
  readonly workerIds = new Set<string>();
  #tasks: Client<typeof TaskService> | undefined;
  #workers: Client<typeof WorkerService> | undefined;
  #nodes: Client<typeof NodeService> | undefined;
  #token = "";

  constructor(
    readonly dir: string,
    readonly docker: Docker,
    /**
     * Host the manager listens on: 127.0.0.1, or a veth address, where the manager (to listen)
     * and the workers (to dial it) get CUBE_INSECURE=1.
     */
    readonly listenHost = "127.0.0.1",
    readonly managerEnv: Record<string, string> = {},
  ) {}

  /** Starts (or restarts on the same data and address) the manager. */
  async startManager(): Promise<Proc> {
    const m = await spawnProc(
      "manager",
      "manager/main.ts",
      {
        CUBE_DATA_DIR: join(this.dir, "manager"),
        CUBE_LISTEN: this.manager ? this.manager.address : `${this.listenHost}:0`,
        ...this.#plaintextOffLoopback(),
        ...this.managerEnv,
      },
      this.dir,
    );
    this.manager = m;
    this.#token = await readToken(join(this.dir, "manager"), "admin");
    const transport = createGrpcTransport({
      baseUrl: `http://${m.address}`,
      pingIntervalMs: 2000,
      interceptors: [bearer(this.#token)],
    });
    this.#tasks = createClient(TaskService, transport);
    this.#workers = createClient(WorkerService, transport);
    this.#nodes = createClient(NodeService, transport);
    return m;
  }

  /** Starts (or restarts on the same data) worker `name`, in `netns` when given. */
  async startWorker(name: string, env: Record<string, string> = {}, netns?: string) {
    if (!this.manager) throw new Error("start the manager first");
    const w = await spawnProc(
      name,
      "worker/main.ts",
      {
        CUBE_MANAGER: this.manager.address,
        CUBE_TOKEN: await readToken(join(this.dir, "manager"), "worker"),
        CUBE_LISTEN: "127.0.0.1:0",
        CUBE_NAME: name,
        CUBE_DATA_DIR: join(this.dir, name),
        // Dialling a manager off loopback in plaintext is refused without it.
        ...this.#plaintextOffLoopback(),
        ...env,
      },
      this.dir,
      netns,
    );
    this.workerIds.add(w.id);
    this.workers.set(name, w);
    return w;
  }

  /** CUBE_INSECURE=1 when the manager is off loopback: plaintext there is refused without it. */
  #plaintextOffLoopback(): Record<string, string> {
    return this.listenHost.startsWith("127.") ? {} : { CUBE_INSECURE: "1" };
  }

  /** A TaskService client of the current manager. */
  get tasks(): Client<typeof TaskService> {
    if (!this.#tasks) throw new Error("no manager");
    return this.#tasks;
  }

  /** A fresh TaskService client on its own connection (for load). */
  freshTasks(): Client<typeof TaskService> {
    return createClient(
      TaskService,
      createGrpcTransport({
        baseUrl: `http://${this.manager?.address}`,
        pingIntervalMs: 2000,
        interceptors: [bearer(this.#token)],
      }),
    );
  }

  get workersApi(): Client<typeof WorkerService> {
    if (!this.#workers) throw new Error("no manager");
    return this.#workers;
  }

  /** A NodeService client of the current manager (cordon, uncordon). */
  get nodes(): Client<typeof NodeService> {
    if (!this.#nodes) throw new Error("no manager");
    return this.#nodes;
  }

  async allTasks(): Promise<Task[]> {
    const out: Task[] = [];
    let pageToken = "";
    do {
      const page = await this.tasks.listTasks({ pageSize: 1000, pageToken });
      out.push(...page.tasks);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return out;
  }

  async readyWorkers(n: number, ms = 30_000): Promise<void> {
    await waitFor(`${n} workers READY`, ms, async () => {
      const { workers } = await this.workersApi.listWorkers({});
      return workers.filter((w) => w.status === WorkerStatus.READY).length >= n;
    });
  }

  /** Running containers of this cluster's workers (or of `workerIds`), by task id. */
  async containers(workerIds?: Iterable<string>): Promise<Map<string, string[]>> {
    const byTask = new Map<string, string[]>();
    for (const id of workerIds ?? this.workerIds) {
      const list = await this.docker.listContainers({
        filters: { label: [`cube.worker=${id}`] },
      });
      for (const c of list) {
        const task = c.Labels["cube.task"] ?? "";
        byTask.set(task, [...(byTask.get(task) ?? []), c.Id]);
      }
    }
    return byTask;
  }

  /** Kills every process (kill -9), then removes every container of its workers. */
  async stop(): Promise<void> {
    const all = [this.manager, ...this.workers.values()].filter((p): p is Proc => !!p);
    await Promise.all(all.map((p) => p.kill9()));
    for (const id of this.workerIds) await removeWorkerContainers(this.docker, id);
  }
}

/**
 * Polls `check` every `everyMs` until it returns true; resolves with the time (Date.now())
 * it first did. Bounded: throws after `ms`, with the last error or "not yet".
 */
export async function waitFor(
  what: string,
  ms: number,
  check: () => Promise<boolean> | boolean,
  everyMs = 100,
): Promise<number> {
  const deadline = Date.now() + ms;
  let last = "not yet";
  for (;;) {
    try {
      if (await check()) return Date.now();
    } catch (error) {
      last = (error as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not after ${ms} ms (${last})`);
    await sleep(everyMs);
  }
}

/**
 * A unix socket in front of the real Docker engine, which the suite can cut (the socket
 * disappears and open connections break, as when dockerd restarts) and restore: the
 * machine's dockerd stays up for everyone else on it.
 */
export class EngineSocket {
  #server: Server | undefined;
  readonly #open = new Set<Socket>();

  constructor(
    readonly path: string,
    readonly target = "/var/run/docker.sock",
  ) {}

  async up(): Promise<void> {
    await unlink(this.path).catch(() => undefined);
    const server = createServer((client) => {
      const engine = createConnection(this.target);
      this.#open.add(client);
      this.#open.add(engine);
      const drop = () => {
        client.destroy();
        engine.destroy();
        this.#open.delete(client);
        this.#open.delete(engine);
      };
      client.on("error", drop).on("close", drop);
      engine.on("error", drop).on("close", drop);
      client.pipe(engine);
      engine.pipe(client);
    });
    server.listen(this.path);
    await once(server, "listening");
    this.#server = server;
  }

  async down(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : null;
    for (const s of this.#open) s.destroy();
    this.#open.clear();
    await closed;
    await unlink(this.path).catch(() => undefined);
  }
}

/** The prefix of every network namespace the suite makes (stale ones are removed at start). */
const NETNS_PREFIX = "cube-fault-";

/**
 * A network namespace with a veth pair on 169.254.77.0/30 (link-local, private to this
 * machine): the host side 169.254.77.1, the namespace side 169.254.77.2 (and its own lo).
 * `down()`/`up()` set the namespace side's link down and up: the worker inside loses its
 * route to the manager, the host side keeps its address (the other workers still reach the
 * manager on it). `remove()` deletes the namespace, which deletes the pair; it is also
 * registered with the bench clean-up, so it runs on failure and on Ctrl-C.
 */
export class NetNs {
  static readonly HOST = "169.254.77.1";
  static readonly INSIDE = "169.254.77.2";
  readonly name = `${NETNS_PREFIX}${process.pid}`;
  readonly hostIf = `cfh${process.pid % 100_000}`;
  readonly nsIf = `cfw${process.pid % 100_000}`;
  #undo: (() => Promise<void>) | undefined;

  /** Whether `ip netns` works here (root, iproute2); the reason when not. */
  static async available(): Promise<string | null> {
    try {
      await run("ip", ["netns", "list"]);
    } catch (error) {
      return `ip netns does not work here: ${(error as Error).message.split("\n")[0]}`;
    }
    if (process.getuid?.() !== 0) return "not root: cannot make a network namespace";
    return null;
  }

  /** Removes namespaces (and host-side veths) left by an earlier run of the suite that was killed. */
  static async removeStale(): Promise<void> {
    const { stdout } = await run("ip", ["netns", "list"]).catch(() => ({ stdout: "" }));
    for (const line of stdout.split("\n")) {
      const name = line.split(" ")[0] ?? "";
      if (name.startsWith(NETNS_PREFIX)) await run("ip", ["netns", "del", name]).catch(() => {});
    }
    const links = await run("ip", ["-o", "link", "show"]).catch(() => ({ stdout: "" }));
    for (const m of links.stdout.matchAll(/^\d+: (cfh\d+)@/gm)) {
      await run("ip", ["link", "del", m[1] as string]).catch(() => {});
    }
  }

  async create(): Promise<void> {
    this.#undo = deferCleanup(`network namespace ${this.name}`, () => this.#remove());
    const ns = (...args: string[]) => run("ip", ["netns", "exec", this.name, "ip", ...args]);
    await run("ip", ["netns", "add", this.name]);
    await run("ip", ["link", "add", this.hostIf, "type", "veth", "peer", "name", this.nsIf]);
    await run("ip", ["link", "set", this.nsIf, "netns", this.name]);
    await run("ip", ["addr", "add", `${NetNs.HOST}/30`, "dev", this.hostIf]);
    await run("ip", ["link", "set", this.hostIf, "up"]);
    await ns("addr", "add", `${NetNs.INSIDE}/30`, "dev", this.nsIf);
    await ns("link", "set", this.nsIf, "up");
    await ns("link", "set", "lo", "up");
  }

  async down(): Promise<void> {
    await run("ip", ["netns", "exec", this.name, "ip", "link", "set", this.nsIf, "down"]);
  }

  async up(): Promise<void> {
    await run("ip", ["netns", "exec", this.name, "ip", "link", "set", this.nsIf, "up"]);
  }

  async remove(): Promise<void> {
    await this.#undo?.();
  }

  async #remove(): Promise<void> {
    await run("ip", ["netns", "del", this.name]).catch(() => {});
    await run("ip", ["link", "del", this.hostIf]).catch(() => {});
  }
}
