import { toJson } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { Command, Option } from "commander";
import {
  CreateTokenResponseSchema,
  Role,
  type Token,
  TokenSchema,
} from "../../gen/cube/v1/token_service_pb.js";
import { formatAge, parseDuration } from "../../lib/parse-duration.js";
import { CALL_TIMEOUT_MS } from "../client.js";
import {
  addClientOptions,
  arg,
  type ClientOptions,
  outputFormat,
  withManager,
} from "../client-options.js";
import { renderTable } from "../format-table.js";
import type { Io } from "../io.js";

const ROLES = ["read", "operator", "admin", "worker"] as const;
type RoleName = (typeof ROLES)[number];
const ROLE: Record<RoleName, Role> = {
  read: Role.READ,
  operator: Role.OPERATOR,
  admin: Role.ADMIN,
  worker: Role.WORKER,
};

interface CreateOptions extends ClientOptions {
  role: RoleName;
  name?: string;
  ttl?: number;
}

/** `cube token create|ls|revoke`: the manager's bearer tokens (an admin token is needed). */
export function tokenCommand(io: Io): Command {
  const cmd = new Command("token").description(
    "manage the bearer tokens clients and workers use (needs an admin token)",
  );
  const create = new Command("create")
    .description("make a token; its secret is printed once and never again")
    .addOption(new Option("--role <role>", "what it may do").choices(ROLES).makeOptionMandatory())
    .option("--name <name>", "what it is for (default: the role)")
    .option(
      "--ttl <duration>",
      "how long it works (default: until revoked)",
      // An expiry date, not a timer: longer than a timer can wait is fine (the manager allows
      // ten years).
      arg((s) => parseDuration(s, Number.MAX_SAFE_INTEGER)),
    );
  addClientOptions(create)
    .addHelpText(
      "after",
      `
Roles: read (lists, watches, logs), operator (read, plus run and stop), admin (everything,
tokens included), worker (a node agent joining the cluster).
Prints the secret on stdout (-o json: the token and its secret); a worker token of a TLS
cluster with the CA's digest appended (<secret>@sha256:<hex>), for \`cube worker --token\`.

Examples:
  cube token create --role read --name dashboard --ttl 720h
  cube token create --role worker --name rack-2
  CUBE_TOKEN=$(cube token create --role operator) cube ps`,
    )
    .action((opts: CreateOptions) =>
      withManager(io, opts, async ({ tokens }) => {
        const answer = await tokens.createToken(
          {
            name: opts.name ?? opts.role,
            role: ROLE[opts.role],
            ttl: opts.ttl === undefined ? undefined : durationFromMs(opts.ttl),
          },
          { timeoutMs: CALL_TIMEOUT_MS },
        );
        if (outputFormat(opts) === "json") {
          io.stdout.write(`${JSON.stringify(toJson(CreateTokenResponseSchema, answer))}\n`);
        } else {
          // A worker token of a TLS cluster is printed with the CA's digest, for `cube worker`.
          io.stdout.write(`${answer.joinToken || answer.secret}\n`);
          io.stderr.write(
            `token ${answer.token?.id} (${opts.role}) created: the secret above is shown only once\n`,
          );
        }
      }),
    );
  const ls = new Command("ls").description("list the tokens (never their secrets)");
  addClientOptions(ls)
    .addHelpText("after", "\nExamples:\n  cube token ls\n  cube token ls -o json")
    .action((opts: ClientOptions) =>
      withManager(io, opts, async ({ tokens }) => {
        const { tokens: list } = await tokens.listTokens({}, { timeoutMs: CALL_TIMEOUT_MS });
        if (outputFormat(opts) === "json") {
          io.stdout.write(
            `${JSON.stringify({ tokens: list.map((x) => toJson(TokenSchema, x)) })}\n`,
          );
          return;
        }
        io.stdout.write(
          renderTable(
            ["ID", "NAME", "ROLE", "AGE", "EXPIRES", "STATUS"],
            list.map((x) => row(x, io.now())),
          ),
        );
      }),
    );
  const revoke = new Command("revoke")
    .description("revoke tokens at once")
    .argument("<ids...>", "token ids (from `cube token ls`)");
  addClientOptions(revoke)
    .addHelpText(
      "after",
      `
Prints the id of each token it revoked (with -o json, the token as revoked, one JSON object
a line, as \`cube stop\` prints tasks). Revoking a revoked token is not an error.

Examples:
  cube token revoke 3f2a9c01d4e5b6a7
  cube token revoke 3f2a9c01d4e5b6a7 -o json | jq .revoked`,
    )
    .action((ids: string[], opts: ClientOptions) =>
      withManager(io, opts, async ({ tokens }) => {
        const json = outputFormat(opts) === "json";
        for (const id of ids) {
          const { token } = await tokens.revokeToken({ id }, { timeoutMs: CALL_TIMEOUT_MS });
          if (!json) io.stdout.write(`${id}\n`);
          // The manager always answers with the token; were it missing, still a JSON line.
          else io.stdout.write(`${JSON.stringify(token ? toJson(TokenSchema, token) : { id })}\n`);
        }
      }),
    );
  return cmd.addCommand(create).addCommand(ls).addCommand(revoke);
}

function row(token: Token, nowMs: number): string[] {
  const created = token.createdAt ? timestampDate(token.createdAt).getTime() : nowMs;
  const expires = token.expiresAt ? timestampDate(token.expiresAt).getTime() : undefined;
  const status = token.revoked
    ? "revoked"
    : expires !== undefined && expires <= nowMs
      ? "expired"
      : "active";
  return [
    token.id,
    token.name,
    (Role[token.role] ?? String(token.role)).toLowerCase(),
    formatAge(nowMs - created),
    expires === undefined ? "never" : new Date(expires).toISOString(),
    status,
  ];
}
