import { Code, ConnectError } from "@connectrpc/connect";
import { type Command, InvalidArgumentError, Option } from "commander";
import { formatDuration } from "../lib/format-ms.js";
import { parseDuration } from "../lib/parse-duration.js";
import { CliError, usageError } from "./cli-error.js";
import {
  checkPlaintext,
  connectManager,
  type ManagerClients,
  managerAddress,
  managerCa,
  managerToken,
} from "./client.js";
import { type CubeConfig, readConfig } from "./config-file.js";
import { describeError } from "./describe-error.js";
import type { Io } from "./io.js";
import { checkManagerAddress } from "./manager-address.js";

/** The options every client command shares. */
export interface ClientOptions {
  manager?: string;
  token?: string;
  ca?: string;
  insecure?: boolean;
  output?: "table" | "json";
  json?: boolean;
}

/** Adds --manager, --token, --ca, --insecure, -o/--output and --json to a client command. */
export function addClientOptions(cmd: Command): Command {
  return cmd
    .option(
      "--manager <host:port>",
      "manager address (default: $CUBE_MANAGER, else the config file's, else 127.0.0.1:5555)",
    )
    .option(
      "--token <token>",
      "bearer token (default: $CUBE_TOKEN, else the config file's, written by `cube dev` and `cube manager`)",
    )
    .option(
      "--ca <file>",
      "the cluster CA's certificate, to talk TLS to the manager (default: $CUBE_CA, else the config file's)",
    )
    .option(
      "--insecure",
      "talk plaintext (no --ca) to a manager that is not on loopback (env CUBE_INSECURE=1): the token and what you send cross the network in the clear",
    )
    .addOption(
      new Option("-o, --output <format>", "output format")
        .choices(["table", "json"])
        .default("table"),
    )
    .option("--json", "same as --output json")
    .hook("preAction", (command) => {
      // Both said, and they disagree: neither wins silently.
      if (command.getOptionValueSource("output") === "cli" && command.opts().output === "table") {
        if (command.opts().json) throw usageError("--json cannot be combined with -o table");
      }
    });
}

/** "json" when -o json or --json was given, else "table". */
export function outputFormat(opts: ClientOptions): "table" | "json" {
  return opts.json || opts.output === "json" ? "json" : "table";
}

/**
 * Runs a command body against the manager; whatever it throws comes out as a
 * CliError with the manager's address in the message where that helps.
 */
export async function withManager<T>(
  io: Io,
  opts: ClientOptions,
  body: (clients: ManagerClients) => Promise<T>,
): Promise<T> {
  let config: CubeConfig;
  try {
    config = await readConfig(io.env);
  } catch (error) {
    throw new CliError((error as Error).message);
  }
  const address = checkManagerAddress(
    managerAddress(opts.manager, io.env, config),
    opts.manager,
    io.env,
  );
  const token = managerToken(opts.token, io.env, config);
  const ca = managerCa(opts.ca, io.env, config);
  checkPlaintext(address, ca, opts.insecure, io.env);
  let clients: ManagerClients;
  try {
    clients = connectManager(address, token, ca);
  } catch (error) {
    throw new CliError((error as Error).message);
  }
  try {
    return await body(clients);
  } catch (error) {
    throw describeError(error, address, ca !== undefined, clients.answered());
  }
}

/** Wraps a pure parser as a commander argument parser: its Error becomes a usage error. */
export function arg<T>(parse: (input: string) => T): (input: string) => T {
  return (input) => {
    try {
      return parse(input);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  };
}

/**
 * A --wait's --timeout: a duration ("90s", "2m") above 0 (0, which elsewhere means "for
 * ever", would give up at once: refused rather than read either way), `defaultMs` when not
 * given, whose help shows that default the way the flag takes it ("(default: 2m)").
 */
export function durationOption(flags: string, description: string, defaultMs: number): Option {
  return new Option(flags, description)
    .argParser(
      arg((input) => {
        const ms = parseDuration(input);
        if (ms === 0) throw new Error("0 would give up at once: give a duration above 0");
        return ms;
      }),
    )
    .default(defaultMs, formatDuration(defaultMs));
}

/** Like {@link arg}, for repeatable options: collects every value in order. */
export function collect<T>(
  parse: (input: string) => T,
): (input: string, previous: T[] | undefined) => T[] {
  const one = arg(parse);
  return (input, previous) => [...(previous ?? []), one(input)];
}

/** Whether a stream ended because the person pressed Ctrl-C: not an error, just the end. */
export function stoppedByUser(io: Io, error: unknown): boolean {
  return io.interrupted.aborted && error instanceof ConnectError && error.code === Code.Canceled;
}
