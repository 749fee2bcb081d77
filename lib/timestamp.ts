import type { Timestamp } from "@bufbuild/protobuf/wkt";

/**
 * The Timestamp of `ms` (whole milliseconds since the epoch, not negative), the same message
 * as protobuf-es `timestampFromMs` gives, written as a literal: that one goes through
 * reflective create(), and the manager makes several per placement. Callers must not mutate
 * it: one made for the same millisecond may be returned again.
 */
export function timestampLiteral(ms: number): Timestamp {
  if (ms === lastMs) return last;
  last = {
    $typeName: "google.protobuf.Timestamp",
    seconds: BigInt(Math.floor(ms / 1000)),
    nanos: (ms % 1000) * 1_000_000,
  };
  lastMs = ms;
  return last;
}

/*
 * The last one made, handed out again for the same millisecond: a placement stamps its
 * task and its two events within one, and tens of placements share each millisecond at
 * full speed, so most of these short-lived objects (which the young generation copies
 * while a batch is in flight) are never made. Messages are not mutated in place here:
 * sharing one is safe.
 */
let lastMs = -1;
let last: Timestamp = { $typeName: "google.protobuf.Timestamp", seconds: 0n, nanos: 0 };
