/** The most replicas a job may have (JOB_LIMITS.count in manager/rules/validate-job.ts). */
export const MAX_REPLICAS = 10_000;

/**
 * Reads the Scale field of a job's page: a whole number from 0 to {@link MAX_REPLICAS}, or
 * what is wrong with it. An empty field is an error, not 0: `Number("")` is 0, and a click
 * on Scale with nothing typed would stop every replica.
 */
export function parseReplicas(text: string): { count: number } | { error: string } {
  const trimmed = text.trim();
  if (trimmed === "") return { error: "type the number of replicas wanted first" };
  if (!/^\d+$/.test(trimmed) || Number(trimmed) > MAX_REPLICAS) {
    return { error: `replicas: a whole number from 0 to ${MAX_REPLICAS}, not "${trimmed}"` };
  }
  return { count: Number(trimmed) };
}
