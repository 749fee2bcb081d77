/**
 * The manager's API as the page calls it: Connect over HTTP/1.1 (fetch; browsers speak no
 * h2c), binary protobuf (cheaper to encode on the manager and to decode here than JSON),
 * with the page's token on every call. Only unary and server-streaming methods: browsers
 * cannot stream a request body (connect-es #1106).
 */
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
} from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { JobService } from "../../gen/cube/v1/job_service_pb.js";
import { NodeService } from "../../gen/cube/v1/node_service_pb.js";
import { TaskService } from "../../gen/cube/v1/task_service_pb.js";
import { WorkerService } from "../../gen/cube/v1/worker_service_pb.js";

/** The clients of the services the dashboard uses. */
export interface Api {
  readonly tasks: Client<typeof TaskService>;
  readonly workers: Client<typeof WorkerService>;
  readonly jobs: Client<typeof JobService>;
  readonly nodes: Client<typeof NodeService>;
}

/**
 * Clients that send `token`; `onUnauthenticated` hears when the manager refuses it (revoked,
 * expired, mistyped), so the page can ask for another.
 */
export function createApi(token: string, onUnauthenticated: (why: string) => void): Api {
  const auth: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    try {
      return await next(req);
    } catch (error) {
      const e = ConnectError.from(error);
      if (e.code === Code.Unauthenticated) onUnauthenticated(e.rawMessage);
      throw e;
    }
  };
  const transport = createConnectTransport({
    baseUrl: location.origin,
    useBinaryFormat: true,
    interceptors: [auth],
  });
  return {
    tasks: createClient(TaskService, transport),
    workers: createClient(WorkerService, transport),
    jobs: createClient(JobService, transport),
    nodes: createClient(NodeService, transport),
  };
}

/** The server's own words for a failed call (its message, without the code prefix). */
export function why(error: unknown): string {
  const e = ConnectError.from(error);
  return `${Code[e.code] ?? e.code}: ${e.rawMessage}`;
}

/** Whether the manager does not serve this method (an older manager, or a feature not yet in). */
export function unimplemented(error: unknown): boolean {
  return ConnectError.from(error).code === Code.Unimplemented;
}
