import { Code, ConnectError } from "@connectrpc/connect";
import { CliError } from "./cli-error.js";
import { ExitCode } from "./exit-codes.js";

const NETWORK_CODES =
  /\b(ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ECONNRESET|EPIPE)\b/;

/** The one line printed when the manager does not answer. */
export function unreachableMessage(address: string): string {
  return `cannot reach the manager at ${address} — start one with \`cube dev\` or \`cube manager\`, or set --manager/CUBE_MANAGER`;
}

function causeText(error: unknown): string {
  let text = "";
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; depth++) {
    text += ` ${e.message} ${(e as { code?: unknown }).code ?? ""}`;
    e = (e as { cause?: unknown }).cause;
  }
  return text;
}

/**
 * Turns whatever a command threw into one line for people and an exit code: an
 * unreachable manager names the address and how to start one, INVALID_ARGUMENT and
 * friends give the server's own words, and anything unexpected its message (never a
 * stack trace; CUBE_DEBUG=1 shows one).
 */
export function describeError(error: unknown, address: string): CliError {
  if (error instanceof CliError) return error;
  if (error instanceof ConnectError) {
    const network = NETWORK_CODES.exec(causeText(error));
    switch (error.code) {
      case Code.Unavailable:
        if (network?.[1] === "ECONNRESET" || network?.[1] === "EPIPE") {
          return new CliError(
            `lost the connection to the manager at ${address}`,
            ExitCode.Unreachable,
          );
        }
        return new CliError(unreachableMessage(address), ExitCode.Unreachable);
      case Code.DeadlineExceeded:
        return new CliError(
          `the manager at ${address} did not answer in time`,
          ExitCode.Unreachable,
        );
      case Code.Canceled:
      case Code.Aborted:
      case Code.Unknown:
      case Code.Internal:
        if (network) {
          return new CliError(
            network[1] === "ECONNREFUSED" || network[1] === "ENOTFOUND"
              ? unreachableMessage(address)
              : `lost the connection to the manager at ${address}`,
            ExitCode.Unreachable,
          );
        }
        break;
      case Code.NotFound:
        return new CliError(error.rawMessage, ExitCode.NotFound);
      case Code.InvalidArgument:
        return new CliError(error.rawMessage, ExitCode.Usage);
      case Code.Unauthenticated:
        return new CliError(
          `the manager at ${address} refused the call: ${error.rawMessage} (give a token with --token or CUBE_TOKEN; \`cube dev\` and \`cube manager\` write one to the config file)`,
          ExitCode.Denied,
        );
      case Code.PermissionDenied:
        return new CliError(error.rawMessage, ExitCode.Denied);
      case Code.Unimplemented:
        return new CliError(
          `${address} does not serve this call (is it a worker rather than the manager?): ${error.rawMessage}`,
        );
      default:
        break;
    }
    return new CliError(error.rawMessage || Code[error.code] || "error");
  }
  const network = NETWORK_CODES.exec(causeText(error));
  if (network?.[1] === "ECONNREFUSED")
    return new CliError(unreachableMessage(address), ExitCode.Unreachable);
  return new CliError(error instanceof Error ? error.message : String(error));
}
