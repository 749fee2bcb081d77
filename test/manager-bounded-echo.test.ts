/**
 * Client text echoed in error messages is bounded and quoted (lib/quote.ts): a multi-megabyte
 * value sent where a short one belongs comes back as a short message with the right code,
 * never as itself (a message travels in a header), and control characters come back escaped.
 */
import { Code, createClient } from "@connectrpc/connect";
import test from "ava";
import { JobService } from "../gen/cube/v1/job_service_pb.js";
import { errorOf } from "./error-of.js";
import { harness, spec } from "./manager-harness.js";

/** Well over what a header may carry, and under the 4 MiB a request may be. */
const HUGE = "x".repeat(3 << 20);
/** Longest message an error about one field may have here: the field path and a few words. */
const SHORT = 400;

test("RunTask: a multi-megabyte host_ip is INVALID_ARGUMENT with a short message; a bad one is quoted", async (t) => {
  const h = await harness(t);
  const huge = await errorOf(
    h.tasks.runTask({ spec: spec({ ports: [{ containerPort: 80, hostIp: HUGE }] }) }),
  );
  t.is(huge.code, Code.InvalidArgument);
  t.regex(huge.rawMessage, /^spec\.ports\[0\]\.host_ip: at most 64 characters \(got 3145728\)$/);
  t.true(huge.rawMessage.length < SHORT, `${huge.rawMessage.length} characters`);

  const escaped = await errorOf(
    h.tasks.runTask({ spec: spec({ ports: [{ containerPort: 80, hostIp: "\u001b[31mred" }] }) }),
  );
  t.is(escaped.code, Code.InvalidArgument);
  t.is(escaped.rawMessage, 'spec.ports[0].host_ip: "\\u001b[31mred" is not an IP address');

  // Through a job's template too (the same check).
  const jobs = createClient(JobService, h.transport);
  const template = await errorOf(
    jobs.applyJob({
      spec: {
        name: "web",
        count: 1,
        template: spec({ ports: [{ containerPort: 80, hostIp: HUGE }] }),
      },
    }),
  );
  t.is(template.code, Code.InvalidArgument);
  t.true(template.rawMessage.startsWith("spec.template.ports[0].host_ip: at most 64"));
  t.true(template.rawMessage.length < SHORT);
  t.is((await h.tasks.listTasks({})).tasks.length, 0, "nothing accepted");
});

test("ApplyJob: a multi-megabyte constraint operator is INVALID_ARGUMENT with a short, quoted message", async (t) => {
  const h = await harness(t);
  const jobs = createClient(JobService, h.transport);
  const error = await errorOf(
    jobs.applyJob({
      spec: {
        name: "web",
        count: 1,
        template: spec(),
        constraints: [{ key: "zone", operator: HUGE, values: ["eu"] }],
      },
    }),
  );
  t.is(error.code, Code.InvalidArgument);
  t.true(error.rawMessage.startsWith('spec.constraints[0].operator: unknown operator "xxxx'));
  t.true(error.rawMessage.includes("(3145728 characters)"), error.rawMessage.slice(0, SHORT));
  t.true(error.rawMessage.length < SHORT, `${error.rawMessage.length} characters`);
  const escaped = await errorOf(
    jobs.applyJob({
      spec: {
        name: "web",
        count: 1,
        template: spec(),
        constraints: [{ key: "zone", operator: "\u202e=", values: ["eu"] }],
      },
    }),
  );
  t.is(
    escaped.rawMessage,
    'spec.constraints[0].operator: unknown operator "\\u202e=": use "=", "!=" or "in"',
  );
});

test("GetNodeMetrics: a multi-megabyte worker_id is NOT_FOUND with a short, quoted message", async (t) => {
  const h = await harness(t);
  const error = await errorOf(h.metrics.getNodeMetrics({ workerId: HUGE }));
  t.is(error.code, Code.NotFound);
  t.true(error.rawMessage.startsWith('worker "xxxx'));
  t.true(error.rawMessage.endsWith("(3145728 characters) not found"), error.rawMessage.slice(-80));
  t.true(error.rawMessage.length < SHORT, `${error.rawMessage.length} characters`);
  const escaped = await errorOf(h.metrics.getNodeMetrics({ workerId: "w\u001b]0;x" }));
  t.is(escaped.rawMessage, 'worker "w\\u001b]0;x" not found');
});
