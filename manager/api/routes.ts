import type { DescFile } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { file_cube_v1_job_service } from "../../gen/cube/v1/job_service_pb.js";
import { file_cube_v1_metrics } from "../../gen/cube/v1/metrics_pb.js";
import { file_cube_v1_node_service } from "../../gen/cube/v1/node_service_pb.js";
import { file_cube_v1_task_service } from "../../gen/cube/v1/task_service_pb.js";
import { file_cube_v1_token_service } from "../../gen/cube/v1/token_service_pb.js";
import { file_cube_v1_worker_service } from "../../gen/cube/v1/worker_service_pb.js";
import type { ControlPlane } from "../core/control-plane.js";
import type { ClusterTls } from "./cluster-tls.js";
import { jobServiceRoutes } from "./job-service.js";
import { metricsServiceRoutes } from "./metrics-service.js";
import { nodeServiceRoutes } from "./node-service.js";
import { taskServiceRoutes } from "./task-service.js";
import { tokenServiceRoutes } from "./token-service.js";
import { workerServiceRoutes } from "./worker-service.js";

/**
 * Every service the manager serves (health and reflection come from lib/rpc/server.ts); `tls`
 * when it serves TLS (worker certificates, TaskLogs dialled with the manager's certificate).
 */
export function managerRoutes(cp: ControlPlane, tls?: ClusterTls): (router: ConnectRouter) => void {
  return (router) => {
    taskServiceRoutes(cp, tls)(router);
    workerServiceRoutes(cp)(router);
    metricsServiceRoutes(cp)(router);
    tokenServiceRoutes(cp, tls)(router);
    jobServiceRoutes(cp)(router);
    nodeServiceRoutes(cp)(router);
  };
}

/** The proto files of those services, for reflection. */
export const MANAGER_FILES: readonly DescFile[] = [
  file_cube_v1_task_service,
  file_cube_v1_worker_service,
  file_cube_v1_metrics,
  file_cube_v1_token_service,
  file_cube_v1_job_service,
  file_cube_v1_node_service,
];
