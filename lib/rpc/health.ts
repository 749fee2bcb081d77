import type { ConnectRouter } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
} from "../../gen/grpc/health/v1/health_pb.js";

/**
 * Serving status of a server and its services, as grpc.health.v1 reports it. The empty
 * service name stands for the whole server; a service is known once set (startServer sets
 * each one its routes serve), and an unknown one is NOT_FOUND, as gRPC's own health servers
 * answer.
 */
export class HealthState {
  readonly #status = new Map<string, Status>([["", Status.SERVING]]);
  readonly #watchers = new Set<() => void>();

  /** Sets the status of a service ("" for the server). */
  set(service: string, status: Status): void {
    this.#status.set(service, status);
    for (const wake of this.#watchers) wake();
  }

  /** The status of a service, or undefined when it is not known. */
  get(service: string): Status | undefined {
    return this.#status.get(service);
  }

  /** Sets the status of the server and of every service it knows. */
  setAll(status: Status): void {
    for (const service of this.#status.keys()) this.#status.set(service, status);
    for (const wake of this.#watchers) wake();
  }

  /** Marks everything NOT_SERVING: the server is draining. */
  shutdown(): void {
    this.setAll(Status.NOT_SERVING);
  }

  /** Resolves at the next change, or when `signal` aborts. */
  changed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        this.#watchers.delete(wake);
        signal.removeEventListener("abort", wake);
        resolve();
      };
      this.#watchers.add(wake);
      signal.addEventListener("abort", wake, { once: true });
    });
  }
}

/** Serves grpc.health.v1.Health (Check and Watch) from `state`. */
export function registerHealth(router: ConnectRouter, state: HealthState): void {
  router.service(Health, {
    check(req) {
      const status = state.get(req.service);
      if (status === undefined) {
        throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
      }
      return { status };
    },
    async *watch(req, ctx) {
      let last: Status | undefined;
      for (;;) {
        // Listen before reading and yielding: the generator may sit suspended at its yield
        // until the client pulls, and a change made meanwhile must not be lost.
        const changed = state.changed(ctx.signal);
        const status = state.get(req.service) ?? Status.SERVICE_UNKNOWN;
        if (status !== last) {
          last = status;
          yield { status };
        }
        // Checked after the send: a draining server's NOT_SERVING goes out before the end.
        if (ctx.signal.aborted) return;
        await changed;
      }
    },
  });
}
