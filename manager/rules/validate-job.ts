import type { Duration } from "@bufbuild/protobuf/wkt";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { JobSpec } from "../../gen/cube/v1/job_pb.js";
import { CONTROL_CHARACTERS as CONTROL } from "../../lib/printable-text.js";
import { quote } from "../../lib/quote.js";
import { LIMITS, validateRunTask } from "./validate-spec.js";

/** Bounds of a job spec (documented in the README and job.proto). */
export const JOB_LIMITS = {
  nameLength: 48,
  /** Replicas of one job. */
  count: 10_000,
  constraints: 32,
  constraintValues: 64,
  labelKeyLength: 253,
  labelValueLength: 1024,
} as const;

/** What an unset field of UpdateStrategy means (Nomad's defaults). */
export const UPDATE_DEFAULTS = {
  maxParallel: 1,
  minHealthyMs: 10_000,
  healthyDeadlineMs: 5 * 60_000,
} as const;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const OPERATORS = new Set(["=", "!=", "in"]);

function bad(field: string, message: string): never {
  throw new ConnectError(`${field}: ${message}`, Code.InvalidArgument);
}

/** Checks a job name; INVALID_ARGUMENT naming `field`. */
export function validateJobName(name: string, field = "name"): void {
  if (name === "") bad(field, "required");
  if (name.length > JOB_LIMITS.nameLength || !NAME.test(name)) {
    bad(
      field,
      `1-${JOB_LIMITS.nameLength} letters, digits, '-', '_' or '.', starting with a letter or digit`,
    );
  }
}

/** Checks a count; INVALID_ARGUMENT naming `field`. */
export function validateCount(count: number, field = "count"): void {
  if (count > JOB_LIMITS.count) bad(field, `at most ${JOB_LIMITS.count} (got ${count})`);
}

function duration(field: string, d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  if (d.seconds < 0n || d.nanos < 0 || d.nanos > 999_999_999) bad(field, "must not be negative");
  const ms = durationMs(d);
  if (ms > LIMITS.durationMs) bad(field, "at most 24h");
  return ms;
}

/**
 * Checks an ApplyJob spec, or throws INVALID_ARGUMENT whose message starts with the field path
 * (`spec.template.ports[0].container_port: …`, `spec.constraints[1].operator: …`). The
 * template is checked as RunTask checks a spec. Nothing is normalised: the spec is stored as
 * given, so applying it again compares equal.
 */
export function validateJobSpec(spec: JobSpec | undefined): JobSpec {
  if (!spec) bad("spec", "required");
  validateJobName(spec.name, "spec.name");
  validateCount(spec.count, "spec.count");
  if (!spec.template) bad("spec.template", "required");
  try {
    validateRunTask({ $typeName: "cube.v1.RunTaskRequest", id: "", spec: spec.template });
  } catch (error) {
    if (error instanceof ConnectError && error.rawMessage.startsWith("spec")) {
      throw new ConnectError(`spec.template${error.rawMessage.slice(4)}`, error.code);
    }
    throw error;
  }
  const u = spec.update;
  if (u) {
    if (u.maxParallel > JOB_LIMITS.count) {
      bad("spec.update.max_parallel", `at most ${JOB_LIMITS.count}`);
    }
    duration("spec.update.min_healthy_time", u.minHealthyTime);
    const deadline = duration("spec.update.healthy_deadline", u.healthyDeadline);
    if (deadline === 0) bad("spec.update.healthy_deadline", "must be above 0 when set");
  }
  if (spec.constraints.length > JOB_LIMITS.constraints) {
    bad("spec.constraints", `at most ${JOB_LIMITS.constraints}`);
  }
  spec.constraints.forEach((c, i) => {
    const f = `spec.constraints[${i}]`;
    if (c.key === "") bad(`${f}.key`, "required");
    if (c.key.length > JOB_LIMITS.labelKeyLength || CONTROL.test(c.key)) {
      bad(`${f}.key`, `a worker label key, at most ${JOB_LIMITS.labelKeyLength} characters`);
    }
    if (!OPERATORS.has(c.operator)) {
      // Quoted and cut short: an operator is two characters, whatever the client sent.
      bad(`${f}.operator`, `unknown operator ${quote(c.operator, 16)}: use "=", "!=" or "in"`);
    }
    if (c.operator === "in") {
      if (c.values.length === 0 || c.values.length > JOB_LIMITS.constraintValues) {
        bad(`${f}.values`, `1-${JOB_LIMITS.constraintValues} values for "in"`);
      }
    } else if (c.values.length !== 1) {
      bad(`${f}.values`, `exactly one value for "${c.operator}" (got ${c.values.length})`);
    }
    c.values.forEach((v, j) => {
      if (v.length > JOB_LIMITS.labelValueLength || CONTROL.test(v)) {
        bad(
          `${f}.values[${j}]`,
          `at most ${JOB_LIMITS.labelValueLength} characters, no control characters`,
        );
      }
    });
  });
  return spec;
}
