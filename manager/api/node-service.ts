import type { ConnectRouter } from "@connectrpc/connect";
import { NodeService } from "../../gen/cube/v1/node_service_pb.js";
import type { ControlPlane } from "../core/control-plane.js";
import { cordonNode, drainNode, nodeOf, removeNode, uncordonNode } from "../rules/node-ops.js";

/**
 * The manager's NodeService: cordon, drain, uncordon and remove workers (manager/rules/node-ops.ts),
 * and the workers with their scheduling state. Changes answer once durable.
 */
export function nodeServiceRoutes(cp: ControlPlane): (router: ConnectRouter) => void {
  return (router) =>
    router.service(NodeService, {
      async listNodes() {
        await cp.committed();
        return { nodes: [...cp.workers.all()].map(nodeOf) };
      },
      async cordonNode(req) {
        return { node: await cordonNode(cp, req.name) };
      },
      async drainNode(req) {
        return { node: await drainNode(cp, req.name, req.deadline) };
      },
      async uncordonNode(req) {
        return { node: await uncordonNode(cp, req.name) };
      },
      async removeNode(req) {
        return { node: await removeNode(cp, req.name) };
      },
    });
}
