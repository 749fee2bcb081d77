import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { setPriority } from "node:os";
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
  /** The end of what it wrote to stderr (for error messages). */
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
 * Spawns `node --import=tsx <script>` from the repository root and resolves once it has
 * printed its first stdout line (a JSON object). It is SIGKILLed by the bench clean-up
 * if still alive; a child that exits or stays silent fails the spawn with its stderr.
 */
export async function spawnChild(options: SpawnOptions): Promise<Child> {
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
      env: { ...process.env, CUBE_LOG_LEVEL: "warn", ...options.env },
      stdio: [options.stdin ? "pipe" : "ignore", "pipe", "pipe"],
    },
  );
  if (options.nice && child.pid) setPriority(child.pid, options.nice);
  let stderr = "";
  // BENCH_LOG_DIR keeps every child's whole stderr (warnings of a thousand workers) to read after.
  const logDir = process.env.BENCH_LOG_DIR;
  const log = logDir
    ? createWriteStream(join(logDir, `${options.name.replace(/\W+/g, "-")}-${child.pid}.log`))
    : undefined;
  child.stderr?.setEncoding("utf8").on("data", (s: string) => {
    stderr = (stderr + s).slice(-TAIL);
    log?.write(s);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
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
      `${options.name} did not start within ${timeoutMs} ms (exit ${child.exitCode ?? child.signalCode}); stderr:\n${stderr.slice(-4000)}`,
    );
  }
  return {
    name: options.name,
    process: child,
    pid: child.pid as number,
    hello,
    exited,
    stderrTail: () => stderr,
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
