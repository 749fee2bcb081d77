import { readFileSync } from "node:fs";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { JobService } from "../gen/cube/v1/job_service_pb.js";
import { NodeService } from "../gen/cube/v1/node_service_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { TokenService } from "../gen/cube/v1/token_service_pb.js";
import { WorkerService } from "../gen/cube/v1/worker_service_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { grpcTransport, plaintextDialProblem } from "../lib/rpc/client.js";
import { MANAGER_URI } from "../lib/tls/identity.js";
import { usageError } from "./cli-error.js";
import type { CubeConfig } from "./config-file.js";
import { envFlag } from "./env-switch.js";

/** Where `cube` looks for the manager when neither --manager nor CUBE_MANAGER says. */
export const DEFAULT_MANAGER = "127.0.0.1:5555";

/**
 * The value given by the flag `flagName` (its value `flag`), else by the environment variable
 * `envName`; undefined when neither is there. An empty (or blank) value given on purpose is a
 * usage error naming where it came from, never a fall back to the next source:
 * `--token "$RO_TOKEN"` with RO_TOKEN unset would run with the config file's admin token.
 */
export function givenSetting(
  flag: string | undefined,
  flagName: string,
  env: NodeJS.ProcessEnv,
  envName: string,
): string | undefined {
  if (flag !== undefined) {
    if (flag.trim() === "") throw usageError(`${flagName} is empty: give a value or leave it out`);
    return flag;
  }
  const value = env[envName];
  if (value !== undefined && value.trim() === "") {
    throw usageError(`${envName} is set but empty: give a value or unset it`);
  }
  return value;
}

/**
 * The manager address: the flag, else CUBE_MANAGER, else the config file's, else
 * {@link DEFAULT_MANAGER}. An empty flag or variable is a usage error ({@link givenSetting}).
 */
export function managerAddress(
  flag: string | undefined,
  env = process.env,
  config: CubeConfig = {},
): string {
  return (
    givenSetting(flag, "--manager", env, "CUBE_MANAGER") ?? (config.manager || DEFAULT_MANAGER)
  );
}

/**
 * The token: the flag, else CUBE_TOKEN, else the config file's; undefined when none. An empty
 * flag or variable is a usage error ({@link givenSetting}).
 */
export function managerToken(
  flag: string | undefined,
  env = process.env,
  config: CubeConfig = {},
): string | undefined {
  return givenSetting(flag, "--token", env, "CUBE_TOKEN") ?? (config.token || undefined);
}

/**
 * The cluster CA's certificate file: the flag, else CUBE_CA, else the config file's;
 * undefined (plaintext) when none. An empty flag or variable is a usage error
 * ({@link givenSetting}).
 */
export function managerCa(
  flag: string | undefined,
  env = process.env,
  config: CubeConfig = {},
): string | undefined {
  return givenSetting(flag, "--ca", env, "CUBE_CA") ?? (config.ca || undefined);
}

/**
 * Refuses, as a usage error (exit 2), to talk plaintext (no CA: `ca` undefined) to a manager
 * that is not on loopback, where the token, specs and secret values would cross the network
 * in the clear, unless `--insecure` (the flag's value `insecure`) or CUBE_INSECURE says so.
 */
export function checkPlaintext(
  address: string,
  ca: string | undefined,
  insecure: boolean | undefined,
  env: NodeJS.ProcessEnv,
): void {
  const problem = plaintextDialProblem({
    address,
    tls: ca !== undefined,
    insecure: Boolean(insecure) || envFlag(env, "CUBE_INSECURE") === true,
    exposes: "the token and what you send (specs, secret values)",
  });
  if (problem) {
    throw usageError(
      `${problem}; give the cluster's CA (--ca FILE, CUBE_CA) to talk TLS, or pass --insecure (CUBE_INSECURE=1) on a network you trust`,
    );
  }
}

/** Clients of the manager's services, sharing one HTTP/2 connection. */
export interface ManagerClients {
  /** host:port (or URL) they talk to, for messages. */
  readonly address: string;
  readonly tasks: Client<typeof TaskService>;
  readonly workers: Client<typeof WorkerService>;
  readonly health: Client<typeof Health>;
  readonly tokens: Client<typeof TokenService>;
  readonly jobs: Client<typeof JobService>;
  readonly nodes: Client<typeof NodeService>;
  /**
   * Whether the manager has answered a call (or started to answer a stream) since these
   * clients were made: a call that fails afterwards lost a connection that worked, which a
   * TLS mismatch or a wrong address does not explain.
   */
  answered(): boolean;
}

/**
 * Connects lazily to the manager over gRPC (h2c, or TLS when `caFile` names the cluster CA's
 * certificate: the manager's certificate must then come from that CA and name
 * cube://manager): nothing is dialled until the first call, so a bad address surfaces as that
 * call's error. An unreadable CA file throws at once.
 */
export function connectManager(address: string, token?: string, caFile?: string): ManagerClients {
  let tls: { ca: string; expect: string } | undefined;
  if (caFile) {
    try {
      tls = { ca: readFileSync(caFile, "utf8"), expect: MANAGER_URI };
    } catch (error) {
      throw new Error(`cannot read the CA file ${caFile}: ${(error as Error).message}`);
    }
  }
  let answered = false;
  // A call's response (a stream's headers) came back: the manager is there and speaks our
  // protocol.
  const noteAnswer: Interceptor = (next) => async (req) => {
    const res = await next(req);
    answered = true;
    return res;
  };
  const transport = grpcTransport(address, { token, tls, interceptors: [noteAnswer] });
  return {
    address,
    answered: () => answered,
    tasks: createClient(TaskService, transport),
    workers: createClient(WorkerService, transport),
    health: createClient(Health, transport),
    tokens: createClient(TokenService, transport),
    jobs: createClient(JobService, transport),
    nodes: createClient(NodeService, transport),
  };
}

/** Deadline of unary calls: a manager that takes longer is as good as gone for a CLI. */
export const CALL_TIMEOUT_MS = 15_000;
