import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** What /proc says about a process's memory and CPU. */
export interface ProcStats {
  /** Peak resident set size (VmHWM), bytes. */
  readonly rssPeakBytes: number;
  /** Current resident set size (VmRSS), bytes. */
  readonly rssBytes: number;
  /** User + system CPU time so far, seconds. */
  readonly cpuSeconds: number;
}

let ticks: number | undefined;

/** Clock ticks per second of /proc/<pid>/stat times (almost always 100). */
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** Reads /proc/<pid>/status and /proc/<pid>/stat (Linux only); throws once the process is gone. */
export function procStats(pid: number): ProcStats {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) * 1024;
  // The command name (field 2) may hold spaces: split after its closing parenthesis.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state (field 3).
  const cpu = (Number(fields[11]) + Number(fields[12])) / clockTicks();
  return { rssPeakBytes: kb("VmHWM"), rssBytes: kb("VmRSS"), cpuSeconds: cpu };
}

/** The machine's CPU time so far, from /proc/stat: busy (all but idle and iowait) and total, seconds. */
export function machineCpu(): { busySeconds: number; totalSeconds: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  // cpu user nice system idle iowait irq softirq steal …
  const t = line.trim().split(/\s+/).slice(1).map(Number);
  const total = t.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (t[3] ?? 0) + (t[4] ?? 0);
  return { busySeconds: (total - idle) / clockTicks(), totalSeconds: total / clockTicks() };
}
