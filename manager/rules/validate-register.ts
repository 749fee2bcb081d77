import { Code, ConnectError } from "@connectrpc/connect";
import type { Register } from "../../gen/cube/v1/worker_service_pb.js";
import { checkMap, checkText, LIMITS } from "./validate-spec.js";

/** Bounds of what a worker says about itself when it registers. */
export const REGISTER_LIMITS = {
  addressLength: 1024,
  versionLength: 128,
  engineReasonLength: 4096,
  callSecretLength: 128,
} as const;

/** What a worker id may look like (JoinWorker checks the same). */
export const WORKER_ID = /^[A-Za-z0-9._-]{1,128}$/;

function bad(field: string, message: string): never {
  throw new ConnectError(`register.${field}: ${message}`, Code.InvalidArgument);
}

/**
 * Checks a worker's Register, or throws INVALID_ARGUMENT naming the field
 * ("register.labels: at most 64 entries"). The worker is authenticated, but what it says is
 * stored durably and shown to people (`cube nodes`, the dashboard, placement events): it is
 * bounded like a task spec, and names and labels are as free of control and
 * bidirectional-override characters.
 */
export function validateRegister(reg: Register): void {
  if (!WORKER_ID.test(reg.workerId)) {
    bad("worker_id", "1-128 letters, digits, '-', '_' or '.'");
  }
  try {
    checkText("name", reg.name, LIMITS.nameLength);
    checkText("address", reg.address, REGISTER_LIMITS.addressLength);
    checkText("version", reg.version, REGISTER_LIMITS.versionLength);
    checkMap(
      "labels",
      reg.labels,
      LIMITS.labelCount,
      LIMITS.labelKeyLength,
      LIMITS.labelValueLength,
    );
    for (const [k, v] of Object.entries(reg.labels)) {
      checkText(`labels["${k}"]`, v, LIMITS.labelValueLength);
    }
  } catch (error) {
    if (!(error instanceof ConnectError)) throw error;
    throw new ConnectError(`register.${error.rawMessage}`, Code.InvalidArgument);
  }
  const c = reg.capacity;
  if (c) {
    if (!Number.isFinite(c.cpu) || c.cpu < 0 || c.cpu > LIMITS.cpu * 1024) {
      bad("capacity.cpu", `a number of cores from 0 to ${LIMITS.cpu * 1024}`);
    }
    if (c.memoryBytes > LIMITS.bytes) bad("capacity.memory_bytes", `at most ${LIMITS.bytes}`);
    if (c.diskBytes > LIMITS.bytes) bad("capacity.disk_bytes", `at most ${LIMITS.bytes}`);
  }
  // A header value: printable ASCII only (the check names the field, never the value).
  if (
    reg.callSecret.length > REGISTER_LIMITS.callSecretLength ||
    !/^[\x21-\x7e]*$/.test(reg.callSecret)
  ) {
    bad("call_secret", `at most ${REGISTER_LIMITS.callSecretLength} printable ASCII characters`);
  }
  const reason = reg.engine?.reason ?? "";
  if (reason.length > REGISTER_LIMITS.engineReasonLength) {
    bad("engine.reason", `at most ${REGISTER_LIMITS.engineReasonLength} characters`);
  }
}
