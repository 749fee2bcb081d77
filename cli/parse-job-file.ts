import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { type JobSpec, JobSpecSchema } from "../gen/cube/v1/job_pb.js";
import { parseDuration } from "../lib/parse-duration.js";
import { parseDocument } from "./parse-document.js";
import { withByteSizes } from "./parse-task-file.js";

/** A duration as the protobuf JSON mapping writes it ("1.5s"); anything else is converted. */
const PROTO_DURATION = /^-?\d+(\.\d+)?s$/;

/** The duration fields of a job file, by path (lowerCamel and as in the .proto). */
const DURATIONS: readonly (readonly string[])[] = [
  ["update", "minHealthyTime"],
  ["update", "min_healthy_time"],
  ["update", "healthyDeadline"],
  ["update", "healthy_deadline"],
  ["template", "restartPolicy", "backoff"],
  ["template", "restart_policy", "backoff"],
  ["template", "restartPolicy", "maxBackoff"],
  ["template", "restart_policy", "max_backoff"],
  ["template", "healthCheck", "interval"],
  ["template", "health_check", "interval"],
  ["template", "healthCheck", "timeout"],
  ["template", "health_check", "timeout"],
  ["template", "healthCheck", "startPeriod"],
  ["template", "health_check", "start_period"],
  ["template", "stopTimeout"],
  ["template", "stop_timeout"],
];

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** `doc` with the duration at `path` written "1.5s" when it was "1m30s" or "500ms". */
function withDuration(
  doc: Record<string, unknown>,
  path: readonly string[],
): Record<string, unknown> {
  const [key, ...rest] = path as [string, ...string[]];
  const value = doc[key];
  if (rest.length === 0) {
    if (typeof value !== "string" || PROTO_DURATION.test(value)) return doc;
    try {
      return { ...doc, [key]: `${parseDuration(value) / 1000}s` };
    } catch {
      return doc; // fromJson names the field in its own message
    }
  }
  if (!isObject(value)) return doc;
  return { ...doc, [key]: withDuration(value, rest) };
}

/**
 * Reads a job file: the protobuf JSON mapping of a JobSpec (field names in lowerCamel or as in
 * the .proto, enums by name), as JSON or YAML. As a kindness to people, the template's sizes
 * may be written "256Mi" and durations "10s", "1m30s" or "500ms". Unknown fields are refused,
 * so a typo does not pass silently. Throws a message naming the file.
 */
export function parseJobFile(text: string, fileName: string): JobSpec {
  const doc = parseDocument(text, fileName);
  if (!isObject(doc)) throw new Error(`${fileName}: expected an object (a JobSpec)`);
  let json: Record<string, unknown> = doc;
  if (isObject(json.template)) json = { ...json, template: withByteSizes(json.template) };
  for (const path of DURATIONS) json = withDuration(json, path);
  try {
    return fromJson(JobSpecSchema, json as JsonValue);
  } catch (error) {
    throw new Error(`${fileName}: ${(error as Error).message}`);
  }
}
