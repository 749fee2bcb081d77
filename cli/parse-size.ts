import { UINT64_MAX } from "./parse-enum.js";

/**
 * Byte sizes as people write them, the Kubernetes way: a plain number is bytes; k, M, G,
 * T, P are powers of 1000 and Ki, Mi, Gi, Ti, Pi powers of 1024; a trailing "B" is allowed
 * ("512MB", "1GiB"). Fractions are fine as long as the unit makes them whole-ish:
 * "1.5Gi" is 1610612736; the result is rounded to a whole byte.
 */
const UNITS: Record<string, number> = {
  "": 1,
  k: 1e3,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
};

/**
 * Parses "256Mi", "1Gi", "512M", "1048576" into bytes; throws a message naming the input,
 * also for a size past uint64 (the fields' type: no request could carry it).
 */
export function parseSize(input: string): bigint {
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([kKMGTP]i?)?B?\s*$/.exec(input);
  const factor = m ? UNITS[m[2] ?? ""] : undefined;
  if (!m || factor === undefined) {
    throw new Error(`"${input}" is not a size: use bytes or a unit, e.g. 256Mi, 1Gi, 512M`);
  }
  const [whole, fraction = ""] = (m[1] as string).split(".");
  // BigInt arithmetic keeps large sizes exact where a double would round.
  const scale = 10n ** BigInt(fraction.length);
  const digits = BigInt((whole || "0") + fraction);
  const f = BigInt(factor);
  const bytes = (digits * f + scale / 2n) / scale;
  if (bytes > UINT64_MAX) {
    throw new Error(`"${input}" is out of range: a size is at most ${UINT64_MAX} bytes`);
  }
  return bytes;
}

/** Bytes for people, in binary units with up to one decimal: 268435456 → "256Mi". */
export function formatSize(bytes: bigint | number): string {
  const n = Number(bytes);
  if (n < 1024) return `${n}B`;
  const units = ["Ki", "Mi", "Gi", "Ti", "Pi"];
  let value = n / 1024;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  const shown = value >= 100 || Number.isInteger(value) ? value.toFixed(0) : value.toFixed(1);
  return `${shown.replace(/\.0$/, "")}${units[i]}`;
}
