import { type DescService, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { type TaskSpec, TaskSpecSchema } from "../gen/cube/v1/task_pb.js";
import {
  type RunTaskRequest,
  RunTaskRequestSchema,
  type RunTasksRequest,
  RunTasksRequestSchema,
} from "../gen/cube/v1/task_service_pb.js";
import { Reader } from "../lib/wire.js";
import { UNUSED_NUMBERS, wireTwin, withRequestsAs } from "./wire-twin.js";

/*
 * RunTasks requests decoded by hand. A call of 5,000 replicas carries one spec 5,000 times,
 * and the reflective fromBinary builds each copy as ~10 objects (~35 ms a call on the
 * manager's one thread, and the garbage collector's work after). Here the manager reads
 * RunTasks through a wire twin of RunTasksRequest that declares `requests` under a field
 * number no client uses: in binary, the real field 1 then arrives as unknown fields, raw
 * bytes that {@link wireRequests} decodes, reading a spec only when its bytes differ from
 * the previous one's; in JSON, "requests" still names the field, which fromJson fills as
 * before. Same wire format, same JSON: clients see no difference.
 */

/** The wire twin of RunTasksRequest (see above; wire-twin.ts). */
export const RunTasksRequestWireSchema = wireTwin(RunTasksRequestSchema, {
  1: UNUSED_NUMBERS[0],
});

/** `service` with RunTasks reading its requests through the twin; handlers keep its type. */
export function withWireRunTasks<S extends DescService>(service: S): S {
  return withRequestsAs(service, "RunTasks", RunTasksRequestWireSchema);
}

/**
 * The requests of a RunTasks call read through the twin: from JSON as parsed, from binary
 * decoded here. Requests whose spec bytes equal the previous request's share its spec
 * object, which run-tasks.ts then checks once. Anything this reader does not expect (a
 * field repeated, an unknown field, another wire type) goes to fromBinary, whole.
 */
export function wireRequests(req: RunTasksRequest): RunTaskRequest[] {
  const unknown = req.$unknown;
  if (!unknown || unknown.length === 0) return req.requests;
  const out: RunTaskRequest[] = req.requests.slice();
  let lastBytes: Uint8Array | undefined;
  let lastSpec: TaskSpec | undefined;
  for (const { no, data } of unknown) {
    if (no !== 1) continue;
    try {
      // Read in place, without a view per field: this runs 5,000 times a call.
      const r = new Reader(data);
      // fromBinary checked the framing of field 1 (data = length, message), not the inside.
      r.small();
      let specStart = -1;
      let specEnd = -1;
      let id: string | undefined;
      let plain = true;
      while (!r.done) {
        const tag = r.small();
        if (tag === 0x0a && specStart < 0) {
          const n = r.small();
          specStart = r.pos;
          specEnd = specStart + n;
          if (specEnd > data.length) throw new Error("truncated spec");
          r.pos = specEnd;
        } else if (tag === 0x12 && id === undefined) {
          id = r.text(r.delimited());
        } else {
          plain = false;
          break;
        }
      }
      if (!plain) {
        // Anything else (an unknown field, a field twice): the reflective reader, whole.
        out.push(fromBinary(RunTaskRequestSchema, new Reader(data).delimited()));
        continue;
      }
      let spec: TaskSpec | undefined;
      if (specStart < 0) spec = undefined;
      else if (lastBytes && lastSpec && sameRange(data, specStart, specEnd, lastBytes)) {
        spec = lastSpec;
      } else {
        // Once per distinct spec: the reflective reader, protobuf's merge rules and all.
        lastBytes = data.subarray(specStart, specEnd);
        spec = fromBinary(TaskSpecSchema, lastBytes);
        lastSpec = spec;
      }
      out.push({ $typeName: "cube.v1.RunTaskRequest", spec, id: id ?? "" });
    } catch (error) {
      throw new ConnectError(
        `requests[${out.length}]: cannot decode: ${(error as Error).message}`,
        Code.InvalidArgument,
      );
    }
  }
  return out;
}

/** Whether `data[start, end)` holds the bytes of `b`. */
function sameRange(data: Uint8Array, start: number, end: number, b: Uint8Array): boolean {
  if (end - start !== b.length) return false;
  for (let i = 0; i < b.length; i++) if (data[start + i] !== b[i]) return false;
  return true;
}
