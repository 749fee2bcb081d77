import { Command } from "commander";
import { devCommand } from "./commands/dev.js";
import { eventsCommand } from "./commands/events.js";
import { inspectCommand } from "./commands/inspect.js";
import { jobCommand } from "./commands/job.js";
import { logsCommand } from "./commands/logs.js";
import { managerCommand } from "./commands/manager.js";
import { nodeCommand } from "./commands/node.js";
import { nodesCommand } from "./commands/nodes.js";
import { psCommand } from "./commands/ps.js";
import { runCommand } from "./commands/run.js";
import { stopCommand } from "./commands/stop.js";
import { tokenCommand } from "./commands/token.js";
import { versionCommand } from "./commands/version.js";
import { workerCommand } from "./commands/worker.js";
import { CUBE_VERSION } from "./cube-version.js";
import { EXIT_CODES_HELP } from "./exit-codes.js";
import type { Io } from "./io.js";

/**
 * The whole `cube` command line, built for one run. Commander never exits the process
 * itself (exitOverride): {@link runCli} turns its errors into exit codes.
 */
export function createProgram(io: Io): Command {
  const program = new Command("cube")
    .description(
      "cube — a small container orchestrator: a manager, workers on Docker, and this CLI",
    )
    .version(CUBE_VERSION, "-V, --version", "print the client version")
    .addHelpText(
      "after",
      `
Quick start:
  cube dev                                   # terminal 1: manager + worker in one process
  cube run cube/httpd:local --name web --port 8080:80 --health-path /health --wait
  cube ps
  cube logs web
  cube stop web

Client commands talk to the manager at --manager, else $CUBE_MANAGER, else the config file's
(written by \`cube dev\` and \`cube manager\`), else 127.0.0.1:5555, with the token of
--token, else $CUBE_TOKEN, else the config file's.
Tables for people, -o json (or --json) for scripts: the protobuf JSON mapping, as grpcurl shows.

${EXIT_CODES_HELP}`,
    );
  const commands = [
    devCommand(io),
    managerCommand(io),
    workerCommand(io),
    runCommand(io),
    psCommand(io),
    inspectCommand(io),
    stopCommand(io),
    jobCommand(io),
    logsCommand(io),
    nodesCommand(io),
    nodeCommand(io),
    eventsCommand(io),
    tokenCommand(io),
    versionCommand(io),
  ];
  for (const cmd of commands) program.addCommand(cmd);
  // addCommand() does not pass settings down (command() would): set them on each command of
  // the tree, sub-commands (cube token create…) included, once it is in place, so that the
  // hint names the whole chain: `cube job run --help`, not `cube run --help`.
  const configure = (cmd: Command): void => {
    cmd
      .exitOverride()
      .showHelpAfterError(`(see \`${commandPath(cmd)} --help\`)`)
      .configureOutput({
        writeOut: (s) => io.stdout.write(s),
        writeErr: (s) => io.stderr.write(s),
      });
    for (const sub of cmd.commands) configure(sub);
  };
  configure(program);
  return program;
}

/** "cube job run": the names from the program down to `cmd`, as a person types them. */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}
