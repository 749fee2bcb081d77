import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { type TaskSpec, TaskSpecSchema } from "../gen/cube/v1/task_pb.js";
import { SPEC_DURATIONS, withHumanDurations } from "./human-durations.js";
import { parseDocument } from "./parse-document.js";
import { parseSize } from "./parse-size.js";

/** What a task file asks for: a spec, and maybe an id (idempotency key). */
export interface TaskFile {
  spec: TaskSpec;
  id?: string;
}

/**
 * Reads a task file: the protobuf JSON mapping of a TaskSpec (field names in lowerCamel or
 * as in the .proto, enums by name), or of a RunTaskRequest (`{id, spec}`), written as JSON
 * or YAML. As a kindness to people, sizes in resources may be written "256Mi" and durations
 * "10s", "1m30s" or "500ms" (the JSON mapping's "90s" works too). Unknown fields are refused, so a typo does not pass
 * silently. Throws a message naming the file.
 */
export function parseTaskFile(text: string, fileName: string): TaskFile {
  const doc = parseDocument(text, fileName);
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new Error(`${fileName}: expected an object (a TaskSpec, or {id, spec})`);
  }
  const obj = doc as Record<string, unknown>;
  const isRequest = Object.hasOwn(obj, "spec");
  const specJson = (isRequest ? obj.spec : obj) as Record<string, unknown>;
  if (isRequest) {
    const extra = Object.keys(obj).filter((k) => k !== "spec" && k !== "id");
    if (extra.length > 0) throw new Error(`${fileName}: unknown field "${extra[0]}" next to spec`);
    if (obj.id !== undefined && typeof obj.id !== "string") {
      throw new Error(`${fileName}: id must be a string`);
    }
  }
  if (specJson === null || typeof specJson !== "object" || Array.isArray(specJson)) {
    throw new Error(`${fileName}: spec must be an object`);
  }
  let spec: TaskSpec;
  try {
    const json = withHumanDurations(withByteSizes(specJson), SPEC_DURATIONS);
    spec = fromJson(TaskSpecSchema, json as JsonValue);
  } catch (error) {
    throw new Error(`${fileName}: ${(error as Error).message}`);
  }
  if (spec.image === "") throw new Error(`${fileName}: image is required`);
  const id = isRequest ? (obj.id as string | undefined) : undefined;
  return id ? { spec, id } : { spec };
}

/** Turns "256Mi"-style sizes in resources into the byte strings the JSON mapping wants. */
export function withByteSizes(spec: Record<string, unknown>): Record<string, unknown> {
  const resources = spec.resources;
  if (resources === null || typeof resources !== "object" || Array.isArray(resources)) return spec;
  const out: Record<string, unknown> = { ...(resources as Record<string, unknown>) };
  for (const key of ["memoryBytes", "memory_bytes", "diskBytes", "disk_bytes"]) {
    const v = out[key];
    if (typeof v === "string" && !/^\d+$/.test(v)) {
      try {
        out[key] = parseSize(v).toString();
      } catch {
        // Leave it: fromJson names the field in its own message.
      }
    }
  }
  return { ...spec, resources: out };
}
