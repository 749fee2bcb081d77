import {
  clone,
  create,
  createFileRegistry,
  type DescMessage,
  type DescService,
} from "@bufbuild/protobuf";
import { DescriptorProtoSchema, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";

/*
 * Wire twins: a request message read by the manager with some of its fields declared under
 * field numbers no client uses (or an answer read so by a benchmark client). In binary those fields then arrive as unknown fields — raw
 * bytes the manager decodes by hand, faster than the reflective fromBinary — while JSON,
 * which names fields, reads them as before. Used where thousands of messages a second
 * arrive: RunTasks requests (run-tasks-wire.ts) and worker streams
 * (worker-requests-wire.ts).
 */

/** The top of protobuf's field number range: numbers a twin gives the fields it moves. */
export const UNUSED_NUMBERS = [536_870_911, 536_870_910, 536_870_909] as const;

/**
 * A twin of `message` in package `cube.v1.wire`: the same fields, JSON names and types, but
 * field number n becomes `moved[n]`.
 */
export function wireTwin(
  message: DescMessage,
  moved: Readonly<Record<number, number>>,
): DescMessage {
  const proto = clone(DescriptorProtoSchema, message.proto);
  for (const field of proto.field) field.number = moved[field.number] ?? field.number;
  const file = message.file;
  const registry = createFileRegistry(
    create(FileDescriptorProtoSchema, {
      name: `cube/v1/wire/${message.name}.proto`,
      package: "cube.v1.wire",
      dependency: [file.proto.name],
      syntax: "proto3",
      messageType: [proto],
    }),
    (name) => (name === file.proto.name ? file : undefined),
  );
  const twin = registry.getMessage(`cube.v1.wire.${message.name}`);
  if (!twin) throw new Error(`wire twin of ${message.typeName} not built`);
  return twin;
}

/**
 * `service` with `method`'s requests read through `input`; every other method as is. A
 * twin's fields keep their names, so the handlers keep the real request type.
 */
export function withRequestsAs<S extends DescService>(
  service: S,
  method: string,
  input: DescMessage,
): S {
  return withMethod(service, method, { input });
}

/**
 * `service` with `method`'s answers read through `output` (for a client); every other method
 * as is. The answers keep the real type's field names, with the moved fields left unread.
 */
export function withAnswersAs<S extends DescService>(
  service: S,
  method: string,
  output: DescMessage,
): S {
  return withMethod(service, method, { output });
}

function withMethod<S extends DescService>(
  service: S,
  method: string,
  change: { input?: DescMessage; output?: DescMessage },
): S {
  const methods = service.methods.map((m) => (m.name === method ? { ...m, ...change } : m));
  return {
    ...service,
    methods,
    method: Object.fromEntries(methods.map((m) => [m.localName, m])),
  } as S;
}
