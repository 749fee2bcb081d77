import http from "node:http";

/** One GET; resolves with the status code, or 0 when nothing answered. */
function get(port: number, path: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(
      { host: "127.0.0.1", port, path, timeout: timeoutMs, agent: false },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(0));
  });
}

/**
 * Polls http://127.0.0.1:<port><path> every `everyMs` until it answers 200; resolves
 * with Date.now() of the first 200. Rejects after `timeoutMs`.
 */
export async function firstHttp200(
  port: number,
  path = "/health",
  options: { everyMs?: number; timeoutMs?: number } = {},
): Promise<number> {
  const everyMs = options.everyMs ?? 2;
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  for (;;) {
    const status = await get(port, path, 1000);
    if (status === 200) return Date.now();
    if (Date.now() > deadline) {
      throw new Error(
        `port ${port}${path} did not answer 200 in time (last: ${status || "nothing"})`,
      );
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
