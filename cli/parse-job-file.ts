import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { type JobSpec, JobSpecSchema } from "../gen/cube/v1/job_pb.js";
import { SPEC_DURATIONS, withHumanDurations } from "./human-durations.js";
import { parseDocument } from "./parse-document.js";
import { withByteSizes } from "./parse-task-file.js";

/** The duration fields of a job file, by path (lowerCamel and as in the .proto). */
const DURATIONS: readonly (readonly string[])[] = [
  ["update", "minHealthyTime"],
  ["update", "min_healthy_time"],
  ["update", "healthyDeadline"],
  ["update", "healthy_deadline"],
  ...SPEC_DURATIONS.map((path) => ["template", ...path]),
];

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
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
  try {
    return fromJson(JobSpecSchema, withHumanDurations(json, DURATIONS) as JsonValue);
  } catch (error) {
    throw new Error(`${fileName}: ${(error as Error).message}`);
  }
}
