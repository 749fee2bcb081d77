/**
 * Parses a cpu amount in cores: "0.5", "2", or Kubernetes millicores "500m". Throws a
 * message naming the input.
 */
export function parseCpu(input: string): number {
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)(m?)\s*$/.exec(input);
  if (!m)
    throw new Error(`"${input}" is not a cpu amount: use cores (0.5, 2) or millicores (500m)`);
  const cores = m[2] === "m" ? Number(m[1]) / 1000 : Number(m[1]);
  if (!Number.isFinite(cores)) throw new Error(`"${input}" is not a cpu amount`);
  return cores;
}
