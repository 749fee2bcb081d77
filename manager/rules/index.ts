import type { ControlPlaneRules } from "../core/control-plane.js";
import { resumeJobs } from "./job-ops.js";
import { resumeDrains } from "./node-ops.js";
import { pendingPass } from "./placing.js";
import { resumeRestarts } from "./restarts.js";
import { collectTasks } from "./task-gc.js";
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
    collectTasks(cp);
  },
};
