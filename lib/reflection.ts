import type { DescFile } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";

/**
 * Serves gRPC server reflection (grpc.reflection.v1 and v1alpha) for the services in
 * `files`, so grpcurl and buf curl can list and call them without .proto files.
 */
export function registerReflection(_router: ConnectRouter, _files: readonly DescFile[]): void {
  // TODO(platform helper): implement.
}
