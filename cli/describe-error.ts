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

/** Codes a call gets when its connection breaks (or was never there). */
export const CUT_CODES: readonly Code[] = [
  Code.Canceled,
  Code.Aborted,
  Code.Internal,
  Code.Unknown,
  Code.Unavailable,
];

/** Network errors that say nothing listens at the address (rather than a connection cut). */
const NOBODY_THERE = /\b(ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN)\b/;

/**
 * Whether the server itself sent the error (its grpc-status came back): it was reached and
 * speaks gRPC, whatever the code says.
 */
export function serverSent(error: ConnectError): boolean {
  return error.metadata.has("grpc-status");
}

/**
 * What connect-es says when it cannot encode a request (a field out of its type's range):
 * "serialize binary: …" (the gRPC transport's binary format, from
 * @connectrpc/connect's protocol/serialization.js), or protobuf-es's own "cannot encode …"
 * (the JSON format, where connect-es passes the error on as it is).
 */
const SERIALIZE_FAILED = /^(serialize binary: |cannot encode )/;

/**
 * Whether `error` arose in this process before anything was sent: connect-es could not encode
 * the request and threw INTERNAL, the code a cut connection gets too. Such an error carries
 * no metadata (no header or trailer came back) and connect-es's encoding message. It is
 * neither a lost connection nor TLS trouble, and trying again cannot mend it.
 */
export function failedBeforeSending(error: unknown): boolean {
  return (
    error instanceof ConnectError &&
    error.code === Code.Internal &&
    [...error.metadata.keys()].length === 0 &&
    SERIALIZE_FAILED.test(error.rawMessage)
  );
}

/** A failed certificate check: the same answer every time, whatever a restart does. */
const CERTIFICATE_REFUSED = /certificate|CERT_|self[- ]signed|does not name cube:\/\/manager/i;

/** What failed TLS handshakes and certificate checks say somewhere in an error's causes. */
const TLS_TROUBLE = new RegExp(
  `${CERTIFICATE_REFUSED.source}|SSL|ERR_TLS|wrong version number`,
  "i",
);

/**
 * Whether `error` is a certificate check that failed (the manager came back with another CA,
 * or the CA given is not its own): trying again cannot mend it.
 */
export function certificateRefused(error: unknown): boolean {
  return (
    error instanceof ConnectError &&
    !serverSent(error) &&
    CERTIFICATE_REFUSED.test(causeText(error))
  );
}

/**
 * A connection that broke for TLS reasons, said so: with a CA, a handshake or certificate
 * check that failed; without one, a call that died before any answer on what may be a TLS
 * port (a TLS server closes a plaintext client without a word), when no call of the command
 * was answered before (`answered`). Undefined otherwise.
 */
function tlsTrouble(
  error: unknown,
  address: string,
  tls: boolean,
  answered: boolean,
): CliError | undefined {
  if (!(error instanceof ConnectError)) return undefined;
  const cause = causeText(error);
  if (tls) {
    if (!TLS_TROUBLE.test(cause)) return undefined;
    return new CliError(
      `cannot talk TLS to the manager at ${address}: ${error.rawMessage}; --ca (CUBE_CA, the config file's ca) must be the cluster CA's certificate (tls/ca.crt in the manager's data dir), and the manager must serve TLS (--tls)`,
      ExitCode.Unreachable,
    );
  }
  if (answered) return undefined;
  // A plaintext HTTP/2 client on a TLS port sees its connection reset or its stream closed
  // (CANCEL); a port where nothing listens is another story, and so is a server that answered
  // (this call, or an earlier one: then a cut is a lost connection, not a TLS port).
  if (!CUT_CODES.includes(error.code) || NOBODY_THERE.test(cause) || serverSent(error)) {
    return undefined;
  }
  return new CliError(
    `lost the connection to the manager at ${address} (${error.rawMessage}); if it serves TLS, give its CA with --ca, CUBE_CA or the config file (tls/ca.crt in its data dir)`,
    ExitCode.Unreachable,
  );
}

/**
 * Turns whatever a command threw into one line for people and an exit code: a request that
 * could not be encoded is an internal client error ({@link failedBeforeSending}), an
 * unreachable manager names the address and how to start one, INVALID_ARGUMENT and
 * friends give the server's own words, a TLS mismatch says so (`tls`: whether the call went
 * over TLS), and anything unexpected its message (never a stack trace; CUBE_DEBUG=1 shows
 * one). `answered`: whether the manager answered an earlier call of the command; a
 * connection that breaks after that is said to be lost, with no TLS hint, since one that
 * worked was no TLS mismatch.
 */
export function describeError(
  error: unknown,
  address: string,
  tls?: boolean,
  answered = false,
): CliError {
  if (error instanceof CliError) return error;
  if (error instanceof ConnectError && failedBeforeSending(error)) {
    return new CliError(
      `internal client error, nothing was sent to the manager: ${error.rawMessage}`,
    );
  }
  if (tls !== undefined) {
    const trouble = tlsTrouble(error, address, tls, answered);
    if (trouble) return trouble;
  }
  if (error instanceof ConnectError && CUT_CODES.includes(error.code)) {
    if (serverSent(error) && error.code === Code.Unavailable) {
      // The manager's own words (it is shutting down; the worker a log stream needs is DOWN):
      // it was reached.
      return new CliError(error.rawMessage, ExitCode.Unreachable);
    }
    if (answered && !serverSent(error) && !NOBODY_THERE.test(causeText(error))) {
      return new CliError(
        `lost the connection to the manager at ${address} (${error.rawMessage})`,
        ExitCode.Unreachable,
      );
    }
  }
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
