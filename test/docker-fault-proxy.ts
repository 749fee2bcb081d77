/**
 * An HTTP proxy on a unix socket in front of the real Docker engine, for worker tests that
 * need the engine to misbehave in one precise way: a request matching a rule gets Docker's
 * own kind of error answer (HTTP 500 with a message), has its connection cut, or is never
 * answered; everything else goes through to the engine unchanged. Point a worker at it with
 * `CUBE_DOCKER_HOST=unix://<path>`.
 */
import { once } from "node:events";
import { rm } from "node:fs/promises";
import { createServer, request } from "node:http";
import { join } from "node:path";
import { tempDir } from "./fixtures.js";

/** What happens to a matching request. */
export interface FaultRule {
  readonly method: string;
  /** Matched against the path without the API version prefix, e.g. /containers/json. */
  readonly path: RegExp;
  /**
   * "error": HTTP `status` with `message`, as the engine words its errors; "cut": the socket
   * is destroyed; "hang": no answer ever (until the client gives up or the proxy closes).
   */
  readonly fault: "error" | "cut" | "hang";
  readonly status?: number;
  readonly message?: string;
  /** How many matching requests it applies to; default every one. */
  times?: number;
  /**
   * With "hang": the request still goes through to the engine, which carries it out (a
   * create makes the container, a start starts it); only the answer is never passed back,
   * as from an engine that did the work and then hung.
   */
  readonly forward?: boolean;
}

/** A running proxy. */
export interface DockerFaultProxy {
  /** `unix://…`, for CUBE_DOCKER_HOST. */
  readonly host: string;
  /** Rules in force, first match wins; push and splice freely. */
  readonly rules: FaultRule[];
  /** Requests a rule answered, as "METHOD path". */
  readonly faulted: string[];
  close(): Promise<void>;
}

const ENGINE_SOCKET = "/var/run/docker.sock";

export async function dockerFaultProxy(dir: string): Promise<DockerFaultProxy> {
  const path = join(dir, "docker-proxy.sock");
  const rules: FaultRule[] = [];
  const faulted: string[] = [];
  const server = createServer((req, res) => {
    const bare = (req.url ?? "").replace(/^\/v[\d.]+/, "").split("?")[0] ?? "";
    const rule = rules.find(
      (r) => r.method === req.method && r.path.test(bare) && (r.times ?? 1) > 0,
    );
    if (rule) {
      if (rule.times !== undefined) rule.times--;
      faulted.push(`${req.method} ${bare}`);
      if (rule.fault === "cut") {
        req.socket.destroy();
        return;
      }
      if (rule.fault === "hang" && rule.forward) {
        // Carried out whatever the client does meanwhile (it may give up); the answer is dropped.
        const upstream = request(
          { socketPath: ENGINE_SOCKET, method: req.method, path: req.url, headers: req.headers },
          (answer) => answer.resume(),
        );
        upstream.on("error", () => undefined);
        req.pipe(upstream);
        return;
      }
      if (rule.fault === "hang") return;
      res.writeHead(rule.status ?? 500, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ message: rule.message ?? "injected by the test" }));
      return;
    }
    const upstream = request(
      { socketPath: ENGINE_SOCKET, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        // At once: an event stream's first bytes may come much later, and its caller waits
        // for the headers.
        res.flushHeaders();
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    res.on("close", () => upstream.destroy());
    req.pipe(upstream);
  });
  await rm(path, { force: true });
  server.listen(path);
  await once(server, "listening");
  return {
    host: `unix://${path}`,
    rules,
    faulted,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A proxy in a fresh temporary directory, closed (and the directory removed) when the test ends. */
export async function testFaultProxy(t: {
  teardown(fn: () => unknown): void;
}): Promise<DockerFaultProxy> {
  const proxy = await dockerFaultProxy(await tempDir(t));
  t.teardown(() => proxy.close());
  return proxy;
}
