// TEMPORARY first-fit stand-in until manager/scheduler/index.ts lands; deleted then.
import type { Plan, Scheduler, Snapshot, TaskRequest } from "./scheduler/types.js";

export const SCHEDULER_NAMES = ["round-robin", "epvm", "fit"] as const;

export function createScheduler(name: (typeof SCHEDULER_NAMES)[number]): Scheduler {
  return {
    name,
    selectCandidates(task, snapshot) {
      const rejected = new Map<string, number>();
      const nodes = snapshot.nodes.filter((n) => {
        if (!n.ready) {
          const why = `is ${n.notReadyReason ?? "not ready"}`;
          rejected.set(why, (rejected.get(why) ?? 0) + 1);
          return false;
        }
        if (task.avoid?.has(n.id)) return false;
        const r = task.resources;
        const ok =
          (r.cpu === 0 ||
            n.capacity.cpu === 0 ||
            n.allocated.cpu + r.cpu <= n.capacity.cpu + 1e-9) &&
          (r.memoryBytes === 0n ||
            n.capacity.memoryBytes === 0n ||
            n.allocated.memoryBytes + r.memoryBytes <= n.capacity.memoryBytes);
        if (!ok) rejected.set("lack resources", (rejected.get("lack resources") ?? 0) + 1);
        return ok;
      });
      return { nodes, rejected };
    },
    score(_t, candidates) {
      return new Map(candidates.map((c, i) => [c.id, i]));
    },
    pick(_s, candidates) {
      return candidates[0];
    },
  };
}

export function schedule(scheduler: Scheduler, task: TaskRequest, snapshot: Snapshot): Plan {
  const c = scheduler.selectCandidates(task, snapshot);
  const node = scheduler.pick(scheduler.score(task, c.nodes, snapshot), c.nodes, snapshot);
  if (node) return { kind: "place", nodeId: node.id, cursor: snapshot.cursor + 1 };
  const parts = [...c.rejected].map(([why, n]) => `${n} ${why}`);
  return {
    kind: "pending",
    reason: `0/${snapshot.nodes.length} workers fit${parts.length ? `: ${parts.join(", ")}` : ""}`,
    cursor: snapshot.cursor,
  };
}
