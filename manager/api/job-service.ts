import type { ConnectRouter } from "@connectrpc/connect";
import type { Job, JobSpec, JobVersion } from "../../gen/cube/v1/job_pb.js";
import { JobService } from "../../gen/cube/v1/job_service_pb.js";
import { redactSpec, redactTask } from "../../lib/redact.js";
import type { ControlPlane } from "../core/control-plane.js";
import {
  applyJob,
  findJob,
  jobSnapshot,
  jobTasks,
  revertJob,
  scaleJob,
  stopJob,
} from "../rules/job-ops.js";
import { validateJobName } from "../rules/validate-job.js";

/** A job spec as answers show it: the template's secret values redacted. */
function redactJobSpec(spec: JobSpec | undefined): JobSpec | undefined {
  if (!spec?.template) return spec;
  const template = redactSpec(spec.template);
  return template === spec.template ? spec : { ...spec, template };
}

function redactJob(job: Job): Job {
  const spec = redactJobSpec(job.spec);
  return spec === job.spec ? job : { ...job, spec };
}

function redactVersion(v: JobVersion): JobVersion {
  const spec = redactJobSpec(v.spec);
  return spec === v.spec ? v : { ...v, spec };
}

/**
 * The manager's JobService: thin handlers over manager/rules/job-ops.ts. Changes answer once
 * durable; reads wait for the commit in flight. Secret env values of templates never leave.
 */
export function jobServiceRoutes(cp: ControlPlane): (router: ConnectRouter) => void {
  return (router) =>
    router.service(JobService, {
      async applyJob(req) {
        const applied = await applyJob(cp, req.spec);
        return { ...applied, job: redactJob(applied.job) };
      },
      async getJob(req) {
        const job = findJob(cp, req.name);
        await cp.committed();
        return {
          job: redactJob(jobSnapshot(cp, job)),
          tasks: jobTasks(job).map((t) => redactTask(t)),
        };
      },
      async listJobs() {
        await cp.committed();
        return { jobs: cp.jobs.all().map((j) => redactJob(jobSnapshot(cp, j))) };
      },
      async scaleJob(req) {
        return { job: redactJob(await scaleJob(cp, req.name, req.count)) };
      },
      async stopJob(req) {
        return { job: redactJob(await stopJob(cp, req.name)) };
      },
      async listJobVersions(req) {
        const job = findJob(cp, req.name);
        await cp.committed();
        const versions = [...job.versions.values()].sort((a, b) =>
          a.version > b.version ? -1 : 1,
        );
        return { versions: versions.map(redactVersion) };
      },
      async revertJob(req) {
        return { job: redactJob(await revertJob(cp, req.name, req.version)) };
      },
      async *watchJobs(req, ctx) {
        if (req.name !== "") validateJobName(req.name);
        const sub = cp.jobs.feed.subscribe();
        try {
          await cp.committed();
          for (const job of cp.jobs.all()) {
            if (req.name === "" || job.name === req.name) {
              yield { job: redactJob(jobSnapshot(cp, job)) };
            }
          }
          while (!ctx.signal.aborted) {
            for (const name of await sub.changed(ctx.signal)) {
              if (req.name !== "" && name !== req.name) continue;
              const job = cp.jobs.get(name);
              if (job) yield { job: redactJob(jobSnapshot(cp, job)) };
            }
          }
        } finally {
          sub.close();
        }
      },
    });
}
