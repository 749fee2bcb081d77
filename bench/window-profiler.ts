/**
 * A V8 CPU profile of just a window of a process's life (the measured part of a run, not
 * its start-up), driven by JSON lines on stdin: {"profile": "start"} answers
 * {"profiling": true}; {"profile": "stop", "file": PATH} writes a .cpuprofile and answers
 * {"profiled": PATH}.
 */
import { writeFile } from "node:fs/promises";
import { Session } from "node:inspector";

/** Handles a profile command line; returns false when the line is not one. */
export type ProfileCommand = (line: { profile?: string; file?: string }) => Promise<boolean>;

/** Starts an inspector session in this process and returns the command handler. */
export function windowProfiler(): ProfileCommand {
  const session = new Session();
  session.connect();
  const post = (method: string) =>
    new Promise<unknown>((resolve, reject) =>
      session.post(method, {}, (error, result) => (error ? reject(error) : resolve(result))),
    );
  return async ({ profile, file }) => {
    if (profile === "start") {
      await post("Profiler.enable");
      await post("Profiler.start");
      process.stdout.write(`${JSON.stringify({ profiling: true })}\n`);
      return true;
    }
    if (profile === "stop" && file) {
      const { profile: data } = (await post("Profiler.stop")) as { profile: object };
      await writeFile(file, JSON.stringify(data));
      process.stdout.write(`${JSON.stringify({ profiled: file })}\n`);
      return true;
    }
    return false;
  };
}
