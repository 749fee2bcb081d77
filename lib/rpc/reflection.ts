import { type DescFile, toBinary } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import { file_grpc_health_v1_health } from "../../gen/grpc/health/v1/health_pb.js";
import {
  file_grpc_reflection_v1_reflection,
  ServerReflection as ServerReflectionV1,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  file_grpc_reflection_v1alpha_reflection,
  ServerReflection as ServerReflectionV1alpha,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** A reflection request as both v1 and v1alpha spell it (their schemas are identical). */
interface ReflectionRequest {
  host: string;
  messageRequest:
    | { case: "fileByFilename" | "fileContainingSymbol"; value: string }
    | { case: "allExtensionNumbersOfType" | "listServices"; value: string }
    | {
        case: "fileContainingExtension";
        value: { containingType: string; extensionNumber: number };
      }
    | { case: undefined; value?: undefined };
}

/** The message_response oneof of a reflection response, valid for v1 and v1alpha. */
type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | {
      case: "allExtensionNumbersResponse";
      value: { baseTypeName: string; extensionNumber: number[] };
    }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/** Everything reflection can be asked about, indexed once per server. */
interface ReflectionIndex {
  services: string[];
  byFilename: Map<string, DescFile>;
  bySymbol: Map<string, DescFile>;
  /** "containing.Type" → extension number → file declaring the extension. */
  extensions: Map<string, Map<number, DescFile>>;
}

/**
 * Serves gRPC server reflection (grpc.reflection.v1 and v1alpha) for the services in
 * `files`, so grpcurl and buf curl can list and call them without .proto files.
 *
 * Listed services: those of `files`, grpc.health.v1.Health and both reflection services.
 * A file is answered together with its transitive imports (well-known types included),
 * each file at most once per stream, as the reflection protocol lets clients cache them.
 * Unknown names get an error_response with code NOT_FOUND; the stream stays open.
 */
export function registerReflection(router: ConnectRouter, files: readonly DescFile[]): void {
  const index = buildIndex([
    ...files,
    file_grpc_health_v1_health,
    file_grpc_reflection_v1_reflection,
    file_grpc_reflection_v1alpha_reflection,
  ]);
  // v1 and v1alpha are the same protocol under two names: one handler serves both.
  const serverReflectionInfo = async function* <R extends ReflectionRequest>(
    requests: AsyncIterable<R>,
  ) {
    const sent = new Set<string>();
    for await (const request of requests) {
      yield {
        validHost: request.host,
        originalRequest: request,
        messageResponse: answer(index, request, sent),
      };
    }
  };
  router.service(ServerReflectionV1, { serverReflectionInfo });
  router.service(ServerReflectionV1alpha, { serverReflectionInfo });
}

function buildIndex(roots: readonly DescFile[]): ReflectionIndex {
  const index: ReflectionIndex = {
    services: [],
    byFilename: new Map(),
    bySymbol: new Map(),
    extensions: new Map(),
  };
  const visit = (file: DescFile) => {
    if (index.byFilename.has(file.proto.name)) return;
    index.byFilename.set(file.proto.name, file);
    for (const dep of file.dependencies) visit(dep);
    for (const type of nestedTypes(file)) {
      index.bySymbol.set(type.typeName, file);
      switch (type.kind) {
        case "service":
          if (roots.includes(file)) index.services.push(type.typeName);
          for (const method of type.methods)
            index.bySymbol.set(`${type.typeName}.${method.name}`, file);
          break;
        case "message":
          for (const field of type.fields)
            index.bySymbol.set(`${type.typeName}.${field.name}`, file);
          for (const oneof of type.oneofs)
            index.bySymbol.set(`${type.typeName}.${oneof.name}`, file);
          // Map entry messages are not among nestedTypes(), but clients may ask for them.
          for (const nested of type.proto.nestedType) {
            if (nested.options?.mapEntry)
              index.bySymbol.set(`${type.typeName}.${nested.name}`, file);
          }
          break;
        case "enum": {
          // Enum values live in the scope that holds the enum, not inside it (C++ scoping).
          const scope = type.typeName.slice(0, type.typeName.length - type.name.length);
          for (const value of type.values) index.bySymbol.set(`${scope}${value.name}`, file);
          break;
        }
        case "extension": {
          const numbers = index.extensions.get(type.extendee.typeName) ?? new Map();
          numbers.set(type.number, file);
          index.extensions.set(type.extendee.typeName, numbers);
          break;
        }
      }
    }
  };
  for (const file of roots) visit(file);
  index.services = [...new Set(index.services)].sort();
  return index;
}

function answer(
  index: ReflectionIndex,
  request: ReflectionRequest,
  sent: Set<string>,
): ReflectionAnswer {
  const req = request.messageRequest;
  switch (req.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: { service: index.services.map((name) => ({ name })) },
      };
    case "fileByFilename":
      return withFile(index.byFilename.get(req.value), `file "${req.value}"`, sent);
    case "fileContainingSymbol":
      return withFile(index.bySymbol.get(req.value), `symbol "${req.value}"`, sent);
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = req.value;
      return withFile(
        index.extensions.get(containingType)?.get(extensionNumber),
        `extension ${extensionNumber} of "${containingType}"`,
        sent,
      );
    }
    case "allExtensionNumbersOfType": {
      if (!index.bySymbol.has(req.value)) return notFound(`type "${req.value}"`);
      const numbers = [...(index.extensions.get(req.value)?.keys() ?? [])].sort((a, b) => a - b);
      return {
        case: "allExtensionNumbersResponse",
        value: { baseTypeName: req.value, extensionNumber: numbers },
      };
    }
    default:
      return {
        case: "errorResponse",
        value: { errorCode: Code.InvalidArgument, errorMessage: "message_request is not set" },
      };
  }
}

/** The file and those of its transitive imports the stream has not received yet. */
function withFile(file: DescFile | undefined, what: string, sent: Set<string>): ReflectionAnswer {
  if (!file) return notFound(what);
  const out: Uint8Array[] = [];
  const add = (f: DescFile, force: boolean) => {
    // The requested file is always answered: a client may ask again after dropping its cache.
    if (!force && sent.has(f.proto.name)) return;
    sent.add(f.proto.name);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
    for (const dep of f.dependencies) add(dep, false);
  };
  add(file, true);
  return { case: "fileDescriptorResponse", value: { fileDescriptorProto: out } };
}

function notFound(what: string): ReflectionAnswer {
  return {
    case: "errorResponse",
    value: { errorCode: Code.NotFound, errorMessage: `${what} not found` },
  };
}
