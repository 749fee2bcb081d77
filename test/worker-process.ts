/**
 * Spawns a real worker process (`node --import=tsx worker/main.ts`, configured by CUBE_*
 * variables) for tests that must kill it for real. The process is SIGKILLed and the
 * containers of its worker id removed when the test ends, pass or fail.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { ExecutionContext } from "ava";
import { removeContainers } from "./fixtures.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** A running worker process. */
export interface WorkerProcess {
  readonly child: ChildProcess;
  /** The worker id it printed. */
  readonly id: string;
  /** Its gRPC server's host:port. */
  readonly address: string;
  /** Resolves with the exit code (or signal) once it exits. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything it wrote to stderr so far (its JSON log). */
  log(): string;
}

/** What to start the worker with. */
export interface SpawnWorkerOptions {
  readonly manager: string;
  readonly dataDir: string;
  readonly name?: string;
  readonly labels?: string;
  readonly env?: Record<string, string>;
  /** How long to wait for it to print its address; default 20 s. */
  readonly timeoutMs?: number;
}

/** Starts a worker process and resolves once it printed its id and address. */
export async function spawnWorker(
  t: ExecutionContext,
  options: SpawnWorkerOptions,
): Promise<WorkerProcess> {
  const child = spawn(process.execPath, ["--import=tsx", "worker/main.ts"], {
    cwd: ROOT,
    env: {
      ...process.env,
      CUBE_MANAGER: options.manager,
      CUBE_LISTEN: "127.0.0.1:0",
      CUBE_DATA_DIR: options.dataDir,
      CUBE_NAME: options.name ?? "test-worker",
      CUBE_LABELS: options.labels ?? "",
      CUBE_LOG_LEVEL: "info",
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (s: string) => {
    stderr += s;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  let id = "";
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
    if (id) await removeContainers(`cube.worker=${id}`);
  });
  const first = await new Promise<{ id: string; address: string }>((resolve, reject) => {
    let stdout = "";
    const timer = setTimeout(
      () => reject(new Error(`worker did not start in time; its log:\n${stderr}`)),
      options.timeoutMs ?? 20_000,
    );
    child.stdout?.setEncoding("utf8").on("data", (s: string) => {
      stdout += s;
      const line = stdout.split("\n")[0];
      if (stdout.includes("\n") && line) {
        clearTimeout(timer);
        try {
          resolve(JSON.parse(line));
        } catch {
          reject(new Error(`unexpected worker output: ${line}`));
        }
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`worker exited (${code ?? signal}) before starting; its log:\n${stderr}`));
    });
  });
  id = first.id;
  return { child, id: first.id, address: first.address, exited, log: () => stderr };
}
