/**
 * Clients and workers refuse to send tokens in plaintext to a manager that is not on loopback
 * unless told `--insecure` (CUBE_INSECURE=1), as kubeadm refuses an unverified join: against
 * a real manager listening in plaintext on every address, dialled at this machine's own
 * non-loopback address.
 */
import { readFile } from "node:fs/promises";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import test from "ava";
import { createHollowDriver } from "../bench/hollow-driver.js";
import { localAddress } from "../cli/config-file.js";
import { runCli } from "../cli/run-cli.js";
import { createLogger } from "../lib/logger.js";
import { plaintextDialProblem } from "../lib/rpc/client.js";
import { startManager } from "../manager/index.js";
import { startWorker } from "../worker/index.js";
import { captureIo, cubeEnv, startCube } from "./cli-harness.js";
import { TEST_SANDBOXES, tempDir, warnings } from "./fixtures.js";
import { eventually } from "./manager-harness.js";

/** An IPv4 address of this machine that is not loopback (the test bed has eth0). */
function ownAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  throw new Error("this machine has no IPv4 address besides loopback");
}

/** A plaintext manager on every address (with --insecure), and its port. */
async function exposedManager(t: Parameters<typeof tempDir>[0]) {
  const m = await startManager({
    listen: "0.0.0.0:0",
    dataDir: await tempDir(t),
    insecure: true,
    logger: createLogger("m", "silent"),
  });
  t.teardown(() => m.close());
  const port = m.address.split(":").at(-1) as string;
  return { m, remote: `${ownAddress()}:${port}`, local: `127.0.0.1:${port}` };
}

test("plaintextDialProblem: loopback, TLS and https:// may; any other host only when insecure", (t) => {
  const exposes = "the token";
  const problem = (address: string, tls = false, insecure = false) =>
    plaintextDialProblem({ address, tls, insecure, exposes });
  for (const ok of [
    "127.0.0.1:5555",
    "127.9.8.7:5555",
    "[::1]:5555",
    "localhost:5555",
    "http://127.0.0.1:5555",
    "http://[::1]:5555",
    "https://10.0.0.5:5555",
  ]) {
    t.is(problem(ok), undefined, ok);
  }
  for (const remote of [
    "10.0.0.5:5555",
    "http://10.0.0.5:5555",
    "manager.example:5555",
    "[fe80::1]:5555",
    "0.0.0.0:5555",
    "128.0.0.1:5555",
  ]) {
    t.is(
      problem(remote),
      `refusing to talk plaintext to ${remote}, which is not loopback: anyone on the network could read the token`,
      remote,
    );
    t.is(problem(remote, true), undefined, `${remote} with TLS`);
    t.is(problem(remote, false, true), undefined, `${remote} with --insecure`);
  }
});

test("a client command refuses a plaintext manager off loopback (exit 2, before anything is sent) unless --insecure or CUBE_INSECURE", async (t) => {
  const { m, remote } = await exposedManager(t);
  const config = join(await tempDir(t), "config.json");
  const ps = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const io = captureIo({ CUBE_CONFIG: config, ...env });
    const code = await runCli(["ps", "--token", m.adminToken as string, ...args], io);
    return { code, stdout: io.out(), stderr: io.err() };
  };
  const refused = await ps(["--manager", remote]);
  t.is(refused.code, 2, refused.stderr);
  t.is(
    refused.stderr,
    `cube: refusing to talk plaintext to ${remote}, which is not loopback: anyone on the network could read the token and what you send (specs, secret values); give the cluster's CA (--ca FILE, CUBE_CA) to talk TLS, or pass --insecure (CUBE_INSECURE=1) on a network you trust\n`,
  );
  // The same from CUBE_MANAGER, and for `cube version` (no token, yet the same rule).
  t.is((await ps([], { CUBE_MANAGER: remote })).code, 2);
  const io = captureIo({ CUBE_CONFIG: config });
  t.is(await runCli(["version", "--manager", remote], io), 2, io.err());
  for (const [args, env] of [
    [["--manager", remote, "--insecure"], {}],
    [["--manager", remote], { CUBE_INSECURE: "1" }],
    [[], { CUBE_MANAGER: remote, CUBE_INSECURE: "yes" }],
  ] as [string[], NodeJS.ProcessEnv][]) {
    const r = await ps(args, env);
    t.is(r.code, 0, `${args.join(" ")} ${JSON.stringify(env)}: ${r.stderr}`);
    t.regex(r.stdout, /^ID\s+NAME\s+STATE/);
  }
});

test("cube manager on every address in plaintext: the config file names its loopback address, so its machine's clients need no flag, and the join command it prints says --insecure", async (t) => {
  t.is(localAddress("0.0.0.0:5555"), "127.0.0.1:5555");
  t.is(localAddress("[::]:5555"), "[::1]:5555");
  t.is(localAddress("10.0.0.5:5555"), "10.0.0.5:5555");
  const dir = await tempDir(t);
  const env = cubeEnv({ CUBE_CONFIG: join(dir, "config.json") });
  const manager = startCube(
    ["manager", "--listen", "0.0.0.0:0", "--insecure", "--data-dir", join(dir, "m")],
    env,
  );
  t.teardown(() => manager.kill());
  const [, port] = await manager.waitFor(/manager listening on 0\.0\.0\.0:(\d+)/);
  const [joinLine] = await manager.waitFor(/cube worker --manager \S+ --token \S+.*\n/);
  t.regex(joinLine, / --insecure\n$/);
  t.is(JSON.parse(await readFile(env.CUBE_CONFIG ?? "", "utf8")).manager, `127.0.0.1:${port}`);
  const io = captureIo({ CUBE_CONFIG: env.CUBE_CONFIG });
  t.is(await runCli(["ps"], io), 0, io.err());
});

test("a worker refuses to join a plaintext manager off loopback unless --insecure, and warns with it", async (t) => {
  const { m, remote } = await exposedManager(t);
  const dir = await tempDir(t);
  const { lines, logger } = await warnings();
  const start = (name: string, insecure: boolean) =>
    startWorker({
      ...TEST_SANDBOXES,
      manager: remote,
      token: m.workerToken,
      listen: "127.0.0.1:0",
      driver: createHollowDriver(),
      dataDir: join(dir, name),
      insecure,
      logger,
    });
  const refused = await t.throwsAsync(start("a", false));
  t.regex(
    refused?.message ?? "",
    /^refusing to talk plaintext to \S+, which is not loopback: anyone on the network could read the join token, this worker's credential and its tasks' secret values; join a TLS manager .* or pass --insecure \(CUBE_INSECURE=1\)/,
  );
  t.deepEqual(lines, [], "refused before any warning");
  const w = await start("b", true);
  t.teardown(() => w.close());
  t.true(
    lines.some((l) => l.includes("INSECURE: dialling the manager in plaintext")),
    lines.join(),
  );
  // It joined: its credential is kept.
  await eventually(() => readFile(join(dir, "b", "credential"), "utf8"), 10_000);
});
