import { type ChildProcess, spawn } from "node:child_process";
import {
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  unlinkSync,
} from "node:fs";
import { setPriority, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { deferCleanup } from "./cleanup.js";

/** What bin/cube.js runs cube's processes with (its shebang): a 64 MiB young generation. */
const NODE_FLAGS = ["--max-semi-space-size=64"];
const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** A Node child process running one of the repository's entry points. */
export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly pid: number;
  /** The first line it printed on stdout, parsed as JSON (its address, id…). */
  readonly hello: Record<string, unknown>;
  /** Resolves once it exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The end of what it wrote to stderr, its log (for error messages). */
  stderrTail(): string;
  /** The next line printed on stdout after the first (parsed); undefined once it exited. */
  nextLine(): Promise<Record<string, unknown> | undefined>;
  /** Writes one JSON line to its stdin (only when spawned with `stdin: true`). */
  send(message: unknown): void;
  /** Sends SIGKILL (unless it is gone) and waits for the exit. */
  kill(): Promise<void>;
  /** Sends SIGTERM and waits up to `ms` for the exit, then SIGKILL. */
  stop(ms?: number): Promise<void>;
}

/** How to spawn a child. */
export interface SpawnOptions {
  /** For messages and clean-up: "manager", "worker 2". */
  readonly name: string;
  /** Entry point relative to the repository root, run with `node --import=tsx`. */
  readonly script: string;
  readonly env?: Record<string, string>;
  readonly args?: readonly string[];
  /** Extra node flags (e.g. --cpu-prof). */
  readonly nodeFlags?: readonly string[];
  /** Give it a stdin pipe for {@link Child.send}; default none. */
  readonly stdin?: boolean;
  /** Scheduling niceness (0–19): lower priority than the process under test. */
  readonly nice?: number;
  /** How long it may take to print its first line; default 30 s. */
  readonly readyTimeoutMs?: number;
}

const TAIL = Number(process.env.BENCH_STDERR_TAIL ?? 16_384);

/**
 * Where children's stderr (their logs) goes: a file each, in BENCH_LOG_DIR (kept, named
 * after the child and its pid) or in a temp folder (deleted when the child exits). A file,
 * not a pipe to this process: pino writes synchronously, so a manager logging to a pipe
 * waits whenever the bench's own event loop is slow to read it (measured: writes stalled up
 * to 86 ms while the reader was busy), and its figures would measure the bench.
 */
const KEEP_LOGS = process.env.BENCH_LOG_DIR;
const LOG_DIR = KEEP_LOGS ?? join(tmpdir(), `cube-bench-logs-${process.pid}`);
let logDirMade = false;
let logSeq = 0;

/** Opens a fresh log file for a child (making the folder, removed by the clean-up, if needed). */
function openLog(name: string): { path: string; fd: number } {
  if (!logDirMade) {
    mkdirSync(LOG_DIR, { recursive: true });
    logDirMade = true;
    if (!KEEP_LOGS) {
      deferCleanup(`log folder ${LOG_DIR}`, () => {
        logDirMade = false;
        rmSync(LOG_DIR, { recursive: true, force: true });
      });
    }
  }
  const path = join(LOG_DIR, `${name.replace(/\W+/g, "-")}-${++logSeq}.log`);
  return { path, fd: openSync(path, "a") };
}

/** The last `bytes` of the file at `path`, as text; "" when it is gone. */
function tailOf(path: string, bytes: number): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const size = fstatSync(fd).size;
    const length = Math.min(size, bytes);
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, size - length);
    return buffer.toString("utf8");
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * The bench's environment without cube's own settings (CUBE_*): a child runs with the
 * product's defaults (log level info, …) and with only the settings its scenario passes,
 * which the scenario prints next to its figures, never with what the shell that started
 * the bench happened to export.
 */
function inheritedEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CUBE_")));
}

/**
 * Spawns `node --import=tsx <script>` from the repository root and resolves once it has
 * printed its first stdout line (a JSON object). It is SIGKILLed by the bench clean-up
 * if still alive; a child that exits or stays silent fails the spawn with its stderr.
 */
export async function spawnChild(options: SpawnOptions): Promise<Child> {
  const log = openLog(options.name);
  const child = spawn(
    process.execPath,
    [
      ...NODE_FLAGS,
      ...(options.nodeFlags ?? []),
      "--import=tsx",
      options.script,
      ...(options.args ?? []),
    ],
    {
      cwd: ROOT,
      env: { ...inheritedEnv(), ...options.env },
      stdio: [options.stdin ? "pipe" : "ignore", "pipe", log.fd],
    },
  );
  closeSync(log.fd);
  if (options.nice && child.pid) setPriority(child.pid, options.nice);
  let logPath = log.path;
  if (KEEP_LOGS && child.pid) {
    logPath = join(LOG_DIR, `${options.name.replace(/\W+/g, "-")}-${child.pid}.log`);
    renameSync(log.path, logPath);
  }
  /** The log's tail once the child is gone (its file is then deleted, unless kept). */
  let lastTail: string | undefined;
  const stderrTail = () => lastTail ?? tailOf(logPath, TAIL);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      if (!KEEP_LOGS) {
        lastTail = tailOf(logPath, TAIL);
        try {
          unlinkSync(logPath);
        } catch {}
      }
      resolve({ code, signal });
    }),
  );
  const alive = () => child.exitCode === null && child.signalCode === null;
  const kill = async () => {
    if (alive()) child.kill("SIGKILL");
    await exited;
  };
  const undo = deferCleanup(`${options.name} (pid ${child.pid})`, kill);
  void exited.then(() => undo());

  const queue: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  let ended = false;
  let buffer = "";
  child.stdout?.setEncoding("utf8").on("data", (s: string) => {
    buffer += s;
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (!line) continue;
      try {
        queue.push(JSON.parse(line));
      } catch {
        queue.push({ text: line });
      }
      waiters.splice(0).forEach((w) => {
        w();
      });
    }
  });
  void exited.then(() => {
    ended = true;
    waiters.splice(0).forEach((w) => {
      w();
    });
  });
  const nextLine = async (): Promise<Record<string, unknown> | undefined> => {
    while (queue.length === 0 && !ended) await new Promise<void>((r) => waiters.push(r));
    return queue.shift();
  };

  const timeoutMs = options.readyTimeoutMs ?? 30_000;
  let timer: NodeJS.Timeout | undefined;
  const hello = await Promise.race([
    nextLine(),
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (!hello) {
    await kill();
    throw new Error(
      `${options.name} did not start within ${timeoutMs} ms (exit ${child.exitCode ?? child.signalCode}); stderr:\n${stderrTail().slice(-4000)}`,
    );
  }
  return {
    name: options.name,
    process: child,
    pid: child.pid as number,
    hello,
    exited,
    stderrTail,
    nextLine,
    send(message) {
      child.stdin?.write(`${JSON.stringify(message)}\n`);
    },
    kill,
    async stop(ms = 5000) {
      if (alive()) child.kill("SIGTERM");
      const timeout = setTimeout(() => {
        if (alive()) child.kill("SIGKILL");
      }, ms);
      await exited;
      clearTimeout(timeout);
    },
  };
}
