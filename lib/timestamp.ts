import type { Timestamp } from "@bufbuild/protobuf/wkt";

/**
 * The Timestamp of `ms` (whole milliseconds since the epoch, not negative), the same message
 * as protobuf-es `timestampFromMs` gives, written as a literal: that one goes through
 * reflective create(), and the manager makes two or three per placement.
 */
export function timestampLiteral(ms: number): Timestamp {
  return {
    $typeName: "google.protobuf.Timestamp",
    seconds: BigInt(Math.floor(ms / 1000)),
    nanos: (ms % 1000) * 1_000_000,
  };
}
