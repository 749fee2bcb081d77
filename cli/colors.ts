import pc from "picocolors";

/** The colour functions `cube` uses. */
export type Colors = ReturnType<typeof pc.createColors>;

/**
 * Colours for a stream: on only when it is a terminal and NO_COLOR is unset (FORCE_COLOR
 * turns them on anyway), so piped output stays plain text for grep and awk.
 */
export function colorsFor(stream: { isTTY?: boolean }, env = process.env): Colors {
  const forced = env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "0";
  const enabled = forced || (stream.isTTY === true && env.NO_COLOR === undefined);
  return pc.createColors(enabled);
}
