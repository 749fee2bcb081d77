import { Command } from "commander";
import { HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import type { CliError } from "../cli-error.js";
import { checkPlaintext, connectManager, managerAddress, managerCa } from "../client.js";
import { addClientOptions, type ClientOptions, outputFormat } from "../client-options.js";
import { readConfig } from "../config-file.js";
import { CUBE_VERSION } from "../cube-version.js";
import { describeError } from "../describe-error.js";
import type { Io } from "../io.js";
import { checkManagerAddress } from "../manager-address.js";

/** `cube version`: this client's version, and whether the manager answers its health check. */
export function versionCommand(io: Io): Command {
  const cmd = new Command("version").description(
    "print the client version and whether the manager answers",
  );
  addClientOptions(cmd)
    .addHelpText(
      "after",
      `
Exits 0 when the manager answers SERVING, 5 when it cannot be reached.

Examples:
  cube version
  cube version --manager 10.0.0.5:5555 --ca ca.crt -o json`,
    )
    .action((opts: ClientOptions) => version(io, opts));
  return cmd;
}

async function version(io: Io, opts: ClientOptions): Promise<void> {
  const config = await readConfig(io.env).catch(() => ({}));
  const address = checkManagerAddress(
    managerAddress(opts.manager, io.env, config),
    opts.manager,
    io.env,
  );
  const ca = managerCa(opts.ca, io.env, config);
  checkPlaintext(address, ca, opts.insecure, io.env);
  let status = "";
  let problem: CliError | undefined;
  try {
    const res = await connectManager(address, undefined, ca).health.check(
      { service: "" },
      { timeoutMs: 5000 },
    );
    status = Status[res.status] ?? String(res.status);
  } catch (error) {
    problem = describeError(error, address);
  }
  if (outputFormat(opts) === "json") {
    const manager = problem
      ? { address, reachable: false, error: problem.message }
      : { address, reachable: true, status };
    io.stdout.write(`${JSON.stringify({ client: CUBE_VERSION, manager }, null, 2)}\n`);
  } else {
    io.stdout.write(`client:  cube ${CUBE_VERSION}\n`);
    io.stdout.write(`manager: ${address} ${problem ? "does not answer" : `answers (${status})`}\n`);
  }
  if (problem) throw problem;
}
