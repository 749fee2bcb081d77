/**
 * Runs the real `cube` executable (bin/cube.js) as a subprocess, for the CLI's end-to-end
 * tests: one-shot commands with their exit code and output, and long-running ones
 * (dev, manager, worker, logs -f, events) whose output is read line by line.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import type { Io } from "../cli/io.js";

/** The executable under test. */
export const CUBE_BIN = fileURLToPath(new URL("../bin/cube.js", import.meta.url));

/** The repository root (where `npx cube` resolves to bin/cube.js). */
export const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));

/**
 * The config file `cube dev` and `cube manager` write and client commands read, one per test
 * process: a test's manager and its clients share it, and the developer's own
 * ~/.config/cube/config.json is never touched.
 */
export const TEST_CONFIG = join(tmpdir(), `cube-test-config-${process.pid}.json`);

/** Environment for cube subprocesses: quiet logs, no colours, the test's config file. */
export function cubeEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CUBE_LOG_LEVEL: "warn",
    CUBE_CONFIG: TEST_CONFIG,
    ...extra,
  };
  delete env.FORCE_COLOR;
  return env;
}

/** What a finished command left. */
export interface CubeResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A cube (or npx) process still running. */
export interface RunningCube {
  readonly child: ChildProcess;
  /** Everything written so far. */
  readonly stdout: () => string;
  readonly stderr: () => string;
  /**
   * Resolves with the first match of `pattern` in stdout (or stderr); rejects after
   * `timeoutMs` or exit. The two pipes are read independently, so text the process wrote
   * to stderr before stdout may still arrive after it: wait on each stream you check.
   */
  waitFor(
    pattern: RegExp,
    timeoutMs?: number,
    from?: "stdout" | "stderr",
  ): Promise<RegExpMatchArray>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<CubeResult>;
  /** Signals the whole process group (as a terminal's Ctrl-C does). */
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once gone. */
  kill(graceMs?: number): Promise<void>;
}

/**
 * Starts `file args…` in its own process group (so npx and its child get signals
 * together), in the repository root.
 */
export function startProcess(
  file: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = cubeEnv(),
): RunningCube {
  const child = spawn(file, [...args], {
    cwd: REPO_ROOT,
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  const listeners = new Set<() => void>();
  child.stdout?.setEncoding("utf8").on("data", (s: string) => {
    out += s;
    for (const l of listeners) l();
  });
  child.stderr?.setEncoding("utf8").on("data", (s: string) => {
    err += s;
    for (const l of listeners) l();
  });
  const exited = new Promise<CubeResult>((resolve) => {
    child.once("close", (code, signal) => {
      for (const l of listeners) l();
      resolve({ code, signal, stdout: out, stderr: err });
    });
  });
  let done = false;
  void exited.then(() => {
    done = true;
  });
  const signal = (sig: NodeJS.Signals) => {
    if (done || child.pid === undefined) return;
    try {
      process.kill(-child.pid, sig);
    } catch {
      // Already gone.
    }
  };
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    signal,
    waitFor(pattern, timeoutMs = 30_000, from = "stdout") {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = (from === "stdout" ? out : err).match(pattern);
          if (m) {
            cleanup();
            resolve(m);
          } else if (done) {
            cleanup();
            reject(
              new Error(
                `exited before printing ${pattern} on ${from}\nstdout: ${out}\nstderr: ${err}`,
              ),
            );
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(
            new Error(
              `no ${pattern} on ${from} within ${timeoutMs} ms\nstdout: ${out}\nstderr: ${err}`,
            ),
          );
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    async kill(graceMs = 5000) {
      signal("SIGTERM");
      const timer = setTimeout(() => signal("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Starts `cube args…` (node bin/cube.js). */
export function startCube(args: readonly string[], env?: NodeJS.ProcessEnv): RunningCube {
  return startProcess(process.execPath, [CUBE_BIN, ...args], env);
}

/** Runs `cube args…` to completion (killed after `timeoutMs`). */
export async function cube(
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CubeResult> {
  const running = startCube(args, options.env);
  const timer = setTimeout(() => running.signal("SIGKILL"), options.timeoutMs ?? 60_000);
  const result = await running.exited;
  clearTimeout(timer);
  return result;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** An {@link Io} whose output is kept in strings, to run the CLI in the test's process. */
export function captureIo(env: NodeJS.ProcessEnv = {}): Io & { out(): string; err(): string } {
  let out = "";
  let err = "";
  const stream = (append: (s: string) => void) =>
    new Writable({
      write(chunk, _encoding, done) {
        append(String(chunk));
        done();
      },
    });
  return {
    stdout: stream((s) => {
      out += s;
    }),
    stderr: stream((s) => {
      err += s;
    }),
    env,
    now: () => Date.now(),
    interrupted: new AbortController().signal,
    out: () => out,
    err: () => err,
  };
}
