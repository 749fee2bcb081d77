import type { DescMessage, Message } from "@bufbuild/protobuf";
import { isReflectMessage, type ReflectMessage, reflect } from "@bufbuild/protobuf/reflect";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * What is wrong with a request message that decoded fine: a field the schema does not have
 * (binary clients built from a newer or a forged .proto; JSON ones are refused earlier by
 * `ignoreUnknownFields: false`), or an enum number the schema does not define. Named by the
 * path of the field in proto names ("spec.restart_policy.mode"); undefined when the message
 * is clean. protobuf-es keeps both quietly (unknown fields in `$unknown`, open enums as
 * numbers): a client that thinks it set `privileged` must hear that nobody read it.
 */
export function strictProblem(message: ReflectMessage, path = ""): string | undefined {
  const unknown = message.getUnknown();
  if (unknown && unknown.length > 0) {
    const numbers = [...new Set(unknown.map((u) => u.no))].join(", ");
    return `${path || message.desc.typeName}: unknown field number ${numbers} (not in ${message.desc.typeName})`;
  }
  for (const field of message.fields) {
    if (!message.isSet(field)) continue;
    const at = path ? `${path}.${field.name}` : field.name;
    switch (field.fieldKind) {
      case "enum": {
        const problem = enumProblem(field.enum.values, message.get(field) as number, at);
        if (problem) return problem;
        break;
      }
      case "message": {
        const problem = strictProblem(message.get(field), at);
        if (problem) return problem;
        break;
      }
      case "list": {
        let i = 0;
        for (const item of message.get(field)) {
          const itemAt = `${at}[${i++}]`;
          const problem =
            field.listKind === "enum"
              ? enumProblem(field.enum.values, item as number, itemAt)
              : isReflectMessage(item)
                ? strictProblem(item, itemAt)
                : undefined;
          if (problem) return problem;
        }
        break;
      }
      case "map": {
        for (const [key, value] of message.get(field)) {
          const valueAt = `${at}["${String(key)}"]`;
          const problem =
            field.mapKind === "enum"
              ? enumProblem(field.enum.values, value as number, valueAt)
              : isReflectMessage(value)
                ? strictProblem(value, valueAt)
                : undefined;
          if (problem) return problem;
        }
        break;
      }
      default:
        break;
    }
  }
  return undefined;
}

function enumProblem(
  values: readonly { number: number }[],
  value: number,
  at: string,
): string | undefined {
  return values.some((v) => v.number === value) ? undefined : `${at}: unknown enum value ${value}`;
}

/** Throws INVALID_ARGUMENT naming the first {@link strictProblem} of `message`. */
export function assertStrict(schema: DescMessage, message: Message): void {
  const problem = strictProblem(reflect(schema, message));
  if (problem) throw new ConnectError(problem, Code.InvalidArgument);
}

/**
 * A server interceptor that refuses every request message with an unknown field or an
 * undefined enum value (INVALID_ARGUMENT naming it) before a handler sees it, unary and
 * streaming alike: one place, for every service.
 */
export const strictInput: Interceptor = (next) => async (req) => {
  const schema = req.method.input;
  if (!req.stream) {
    assertStrict(schema, req.message);
    return next(req);
  }
  const messages = req.message;
  return next({
    ...req,
    message: (async function* () {
      for await (const m of messages) {
        assertStrict(schema, m);
        yield m;
      }
    })(),
  });
};
