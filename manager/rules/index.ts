import type { ControlPlane, ControlPlaneRules } from "../core/control-plane.js";
import { resumeJobs } from "./job-ops.js";
import { sweepNodes } from "./node-gc.js";
import { resumeDrains } from "./node-ops.js";
import { pendingPass } from "./placing.js";
import { resumeRestarts } from "./restarts.js";
import { sweepTasks, TASK_GC_INTERVAL_MS } from "./task-gc.js";
import { startupGrace, watchProgress } from "./worker-liveness.js";

/** The rules the control plane calls back into (see {@link ControlPlaneRules}). */
export const RULES: ControlPlaneRules = {
  pendingPass,
  resume(cp) {
    startupGrace(cp);
    watchProgress(cp);
    resumeRestarts(cp);
    resumeJobs(cp);
    resumeDrains(cp);
    collectGarbage(cp);
  },
};

/**
 * Garbage collection, every {@link TASK_GC_INTERVAL_MS} on the control plane's clock from now
 * on: ended tasks (rules/task-gc.ts), then workers DOWN for good (rules/node-gc.ts).
 */
function collectGarbage(cp: ControlPlane): void {
  cp.timer(TASK_GC_INTERVAL_MS, () => {
    sweepTasks(cp);
    sweepNodes(cp);
    collectGarbage(cp);
  });
}
