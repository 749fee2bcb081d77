import { toJson } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Command } from "commander";
import {
  DrainStatus,
  ListNodesResponseSchema,
  type Node,
  NodeSchema,
} from "../../gen/cube/v1/node_service_pb.js";
import { formatDuration } from "../../lib/format-ms.js";
import { parseDuration } from "../../lib/parse-duration.js";
import { printable } from "../../lib/printable-text.js";
import { CliError } from "../cli-error.js";
import { CALL_TIMEOUT_MS, type ManagerClients } from "../client.js";
import {
  addClientOptions,
  arg,
  type ClientOptions,
  outputFormat,
  stoppedByUser,
  withManager,
} from "../client-options.js";
import { type Colors, colorsFor } from "../colors.js";
import { ExitCode } from "../exit-codes.js";
import { renderTable } from "../format-table.js";
import { WORKER_HEAD, workerRow } from "../format-worker.js";
import type { Io } from "../io.js";
import { watchUntil } from "../reconnect.js";

interface LsOptions extends ClientOptions {
  trunc: boolean;
}

interface DrainOptions extends ClientOptions {
  deadline?: number;
  wait?: boolean;
}

/** Columns of `cube node ls`: those of `cube nodes`, and where scheduling stands. */
const NODE_HEAD = [...WORKER_HEAD, "SCHEDULING"];

/** "cordoned", "draining 3/5 left", "drained", …, coloured when enabled. */
export function schedulingLabel(node: Node, colors: Colors): string {
  const d = node.drain;
  if (d?.status === DrainStatus.DRAINING) {
    return colors.yellow(`draining, ${d.tasksLeft}/${d.tasksTotal} left`);
  }
  if (d?.status === DrainStatus.DEADLINE_REACHED && node.cordoned) {
    return colors.red(
      d.tasksLeft > 0 ? `drain deadline reached, ${d.tasksLeft} left` : "drained (deadline)",
    );
  }
  if (node.cordoned) {
    return d?.status === DrainStatus.COMPLETE ? colors.dim("drained") : colors.yellow("cordoned");
  }
  return "schedulable";
}

/** `cube node ls|cordon|drain|uncordon`: what operators do to workers. */
export function nodeCommand(io: Io): Command {
  const cmd = new Command("node")
    .description(
      "list workers; cordon, drain, uncordon and remove them (`cube nodes` lists them too)",
    )
    .addHelpText(
      "after",
      `
Examples:
  cube node ls
  cube node cordon w2
  cube node drain w2 --deadline 10m --wait
  cube node uncordon w2`,
    );

  const ls = new Command("ls")
    .description("list workers with their scheduling state")
    .option("--no-trunc", "show ids in full");
  addClientOptions(ls)
    .addHelpText(
      "after",
      `
Examples:
  cube node ls
  cube node ls -o json | jq -r '.nodes[] | select(.cordoned) | .worker.name'`,
    )
    .action((opts: LsOptions) =>
      withManager(io, opts, async ({ nodes }) => {
        const answer = await nodes.listNodes({}, { timeoutMs: CALL_TIMEOUT_MS });
        if (outputFormat(opts) === "json") {
          io.stdout.write(`${JSON.stringify(toJson(ListNodesResponseSchema, answer), null, 2)}\n`);
          return;
        }
        const colors = colorsFor(io.stdout, io.env);
        const rows = answer.nodes.map((n) => [
          ...(n.worker ? workerRow(n.worker, { now: io.now(), colors, noTrunc: !opts.trunc }) : []),
          schedulingLabel(n, colors),
        ]);
        io.stdout.write(renderTable(NODE_HEAD, rows));
      }),
    );

  const cordon = new Command("cordon")
    .description("place no new task on the worker (what runs there stays)")
    .argument("<name>", "worker name or id");
  addClientOptions(cordon)
    .addHelpText("after", "\nExamples:\n  cube node cordon w2")
    .action((name: string, opts: ClientOptions) =>
      withManager(io, opts, async ({ nodes }) => {
        const { node } = await nodes.cordonNode({ name }, { timeoutMs: CALL_TIMEOUT_MS });
        print(io, opts, node);
      }),
    );

  const uncordon = new Command("uncordon")
    .description("let tasks be placed on the worker again (ends a drain under way)")
    .argument("<name>", "worker name or id");
  addClientOptions(uncordon)
    .addHelpText("after", "\nExamples:\n  cube node uncordon w2")
    .action((name: string, opts: ClientOptions) =>
      withManager(io, opts, async ({ nodes }) => {
        const { node } = await nodes.uncordonNode({ name }, { timeoutMs: CALL_TIMEOUT_MS });
        print(io, opts, node);
      }),
    );

  const rm = new Command("rm")
    .alias("remove")
    .description("forget a worker gone for good (it must be DOWN and hold no task)")
    .argument("<name>", "worker name or id");
  addClientOptions(rm)
    .addHelpText(
      "after",
      `
Only a DOWN worker holding no task can be removed (its tasks are replaced elsewhere after the
down grace). Should its agent dial in again, it registers as a new worker. Its credential
stays until revoked: cube token ls, then cube token revoke ID.

Examples:
  cube node rm w3`,
    )
    .action((name: string, opts: ClientOptions) =>
      withManager(io, opts, async ({ nodes }) => {
        const { node } = await nodes.removeNode({ name }, { timeoutMs: CALL_TIMEOUT_MS });
        if (!node) throw new CliError("the manager answered without a node");
        if (outputFormat(opts) === "json") {
          io.stdout.write(`${JSON.stringify({ node: toJson(NodeSchema, node) })}\n`);
        } else {
          io.stdout.write(`${node.worker?.name ?? name}: removed\n`);
        }
      }),
    );

  const drain = new Command("drain")
    .description("cordon the worker and move its tasks off")
    .argument("<name>", "worker name or id")
    .option(
      "--deadline <duration>",
      "after this, what is left is stopped (default 5m)",
      arg(parseDuration),
    )
    .option("--wait", "follow the drain until no task is left on the worker");
  addClientOptions(drain)
    .addHelpText(
      "after",
      `
A job's replicas move at most update.maxParallel at a time per job, each replacement healthy
before the replica it replaces stops; other tasks are moved to a worker that fits.

Examples:
  cube node drain w2
  cube node drain w2 --deadline 2m --wait
  cube node ls`,
    )
    .action((name: string, opts: DrainOptions) =>
      withManager(io, opts, async (clients) => {
        const { node } = await clients.nodes.drainNode(
          {
            name,
            deadline:
              opts.deadline === undefined
                ? undefined
                : {
                    seconds: BigInt(Math.floor(opts.deadline / 1000)),
                    nanos: (opts.deadline % 1000) * 1e6,
                  },
          },
          { timeoutMs: CALL_TIMEOUT_MS },
        );
        print(io, opts, node);
        if (opts.wait && node?.worker) await waitForDrain(io, clients, node.worker.id);
      }),
    );

  return cmd
    .addCommand(ls)
    .addCommand(cordon)
    .addCommand(drain)
    .addCommand(uncordon)
    .addCommand(rm);
}

function print(io: Io, opts: ClientOptions, node: Node | undefined): void {
  if (!node) throw new CliError("the manager answered without a node");
  if (outputFormat(opts) === "json") {
    io.stdout.write(`${JSON.stringify({ node: toJson(NodeSchema, node) })}\n`);
    return;
  }
  io.stdout.write(
    `${printable(node.worker?.name ?? "")}: ${schedulingLabel(node, colorsFor(io.stdout, io.env))}\n`,
  );
}

/**
 * Follows the worker (WatchWorkers: it changes whenever a task leaves it) until its drain is
 * no longer under way; progress on stderr. Exit 0 when drained, 6 when the deadline stopped
 * what was left.
 */
async function waitForDrain(io: Io, clients: ManagerClients, workerId: string): Promise<void> {
  const started = io.now();
  const colors = colorsFor(io.stderr, io.env);
  let last = "";
  /** One look at the node: true once drained; throws when the drain ended otherwise. */
  const look = async (): Promise<boolean> => {
    const { nodes } = await clients.nodes.listNodes({}, { timeoutMs: CALL_TIMEOUT_MS });
    const node = nodes.find((n) => n.worker?.id === workerId);
    if (!node) return false;
    const line = schedulingLabel(node, colors);
    if (line !== last) {
      last = line;
      io.stderr.write(`${formatDuration(io.now() - started).padStart(7)}  ${line}\n`);
    }
    const d = node.drain;
    if (d?.status === DrainStatus.COMPLETE) return true;
    if (d?.status === DrainStatus.DEADLINE_REACHED && d.tasksLeft === 0) {
      const took = d.startedAt ? formatDuration(io.now() - timestampMs(d.startedAt)) : "";
      throw new CliError(
        `drain reached its deadline after ${took}: what was still there was stopped on it, to start again elsewhere (or wait PENDING for room)`,
        ExitCode.Timeout,
      );
    }
    if (d?.status === DrainStatus.CANCELLED)
      throw new CliError("the drain was cancelled (uncordoned)");
    return false;
  };
  try {
    await watchUntil(
      io,
      clients.address,
      io.interrupted,
      () => clients.workers.watchWorkers({}, { signal: io.interrupted }),
      async ({ worker }) => worker?.id === workerId && (await look()),
    );
  } catch (error) {
    if (stoppedByUser(io, error)) throw new CliError("interrupted", ExitCode.Interrupted);
    throw error;
  }
}
