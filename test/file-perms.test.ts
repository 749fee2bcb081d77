/**
 * Files that hold secrets and the data directories they live in, on real files in temporary
 * directories: secrets are written as ssh writes keys (a new 0600 file renamed into place,
 * never through an existing file or a planted link), looser ones are made 0600 with a warning,
 * data directories are made 0700, and one another user owns or may write is refused.
 */
import {
  chmod,
  chown,
  lstat,
  mkdir,
  readdir,
  readFile,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { createHollowDriver } from "../bench/hollow-driver.js";
import { prepareDataDir, UnsafeDataDirError } from "../lib/data-dir.js";
import { createLogger } from "../lib/logger.js";
import { tightenSecretFile, writeSecretFile } from "../lib/secret-file.js";
import { startManager } from "../manager/index.js";
import { startWorker } from "../worker/index.js";
import { cube, cubeEnv, startCube } from "./cli-harness.js";
import { startTestManager, TEST_SANDBOXES, tempDir, warnings } from "./fixtures.js";
import { eventually } from "./manager-harness.js";

/** nobody: another user than the one running the tests (root here). */
const NOBODY = 65534;

const modeOf = async (path: string) => (await stat(path)).mode & 0o777;

/** A file another user owns that anyone may write, as the QA planted it. */
async function bait(dir: string): Promise<string> {
  const path = join(dir, "x");
  await writeFile(path, "");
  await chown(path, NOBODY, NOBODY);
  await chmod(path, 0o666);
  return path;
}

test("writeSecretFile: a new 0600 file renamed into place; an old file's mode does not stay, a link is replaced, not written through", async (t) => {
  const dir = await tempDir(t);
  const config = join(dir, "config.json");
  await writeFile(config, "{}\n");
  await chmod(config, 0o644);
  await writeSecretFile(config, "token\n");
  t.is(await readFile(config, "utf8"), "token\n");
  t.is(await modeOf(config), 0o600);

  const x = await bait(dir);
  const planted = join(dir, "admin.token");
  await symlink(x, planted);
  await writeSecretFile(planted, "admin\n");
  t.true((await lstat(planted)).isFile(), "the link itself was replaced");
  t.is(await modeOf(planted), 0o600);
  t.is(await readFile(x, "utf8"), "", "nothing reached the link's target");

  // A certificate anyone may read keeps the mode asked for.
  await writeSecretFile(join(dir, "ca.crt"), "cert\n", { mode: 0o644 });
  t.is(await modeOf(join(dir, "ca.crt")), 0o644);

  // Exclusive: made once, never replaced, a link included.
  const key = join(dir, "secrets.key");
  await writeSecretFile(key, "first", { exclusive: true });
  await t.throwsAsync(writeSecretFile(key, "second", { exclusive: true }), { code: "EEXIST" });
  t.is(await readFile(key, "utf8"), "first");
  const linkedKey = join(dir, "other.key");
  await symlink(x, linkedKey);
  await t.throwsAsync(writeSecretFile(linkedKey, "k", { exclusive: true }), { code: "EEXIST" });
  t.is(await readFile(x, "utf8"), "");
  t.is(await modeOf(key), 0o600);

  // No temporary file is left behind, whether the write went through or not.
  const names = (await readdir(dir)).sort().join(" ");
  t.is(names, "admin.token ca.crt config.json other.key secrets.key x");
});

test("tightenSecretFile: 0600 for a looser file (its old mode returned); a private, absent or linked one is left alone", async (t) => {
  const dir = await tempDir(t);
  const loose = join(dir, "loose");
  await writeFile(loose, "s");
  await chmod(loose, 0o640);
  t.is(await tightenSecretFile(loose), 0o640);
  t.is(await modeOf(loose), 0o600);
  t.is(await tightenSecretFile(loose), undefined);
  t.is(await tightenSecretFile(join(dir, "absent")), undefined);
  const x = await bait(dir);
  await symlink(x, join(dir, "link"));
  t.is(await tightenSecretFile(join(dir, "link")), undefined);
  t.is(await modeOf(x), 0o666, "chmod did not follow the link");
});

test("cube manager: the config file ends 0600 (with a warning when it was looser), a link planted as admin.token is replaced, not written through, and the data directory is 0700", async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, "cfg"));
  const config = join(dir, "cfg", "config.json");
  await writeFile(config, "{}\n");
  await chmod(config, 0o644);
  const data = join(dir, "data");
  await mkdir(data);
  await chmod(data, 0o755);
  const x = await bait(dir);
  await symlink(x, join(data, "admin.token"));

  const manager = startCube(
    ["manager", "--listen", "127.0.0.1:0", "--data-dir", data],
    cubeEnv({ CUBE_CONFIG: config }),
  );
  t.teardown(() => manager.kill());
  await manager.waitFor(/address, admin token written to /);
  await manager.kill();

  t.is(await modeOf(config), 0o600);
  const written = JSON.parse(await readFile(config, "utf8")) as { token?: string };
  t.truthy(written.token);
  t.regex(
    manager.stderr(),
    /cube: warning: \S+config\.json holds a token but was readable by group and others \(mode 0644\): written again with mode 0600/,
  );
  t.is(await readFile(x, "utf8"), "", "the admin token did not go through the link");
  t.true((await lstat(join(data, "admin.token"))).isFile());
  t.is(await modeOf(join(data, "admin.token")), 0o600);
  t.is((await readFile(join(data, "admin.token"), "utf8")).trim(), written.token ?? "");
  // LevelDB makes its files 0644: the directory keeps them from other users.
  t.is(await modeOf(data), 0o700);
  t.regex(manager.stderr(), /data directory \S+ was readable by group and others \(mode 0755\)/);
});

test("cube manager and cube worker refuse a data directory others may write or another user owns: exit 2, naming it and the fix", async (t) => {
  const dir = await tempDir(t);
  const writable = join(dir, "shared");
  await mkdir(writable);
  await chmod(writable, 0o775);
  const foreign = join(dir, "foreign");
  await mkdir(foreign, { mode: 0o700 });
  await chown(foreign, NOBODY, NOBODY);
  const env = cubeEnv({ CUBE_CONFIG: join(dir, "config.json") });
  const run = (args: string[]) => cube(args, { env, timeoutMs: 20_000 });
  const [manager, worker, owned] = await Promise.all([
    run(["manager", "--listen", "127.0.0.1:0", "--data-dir", writable]),
    run(["worker", "--listen", "127.0.0.1:0", "--data-dir", writable]),
    run(["manager", "--listen", "127.0.0.1:0", "--data-dir", foreign]),
  ]);
  for (const r of [manager, worker]) {
    t.is(r.code, 2, r.stderr);
    t.regex(
      r.stderr,
      /^cube: cannot start the (manager|worker): data directory \S+\/shared is writable by group \(mode 0775\): .*; fix it with: chmod 700 \S+\/shared\n$/,
    );
  }
  t.is(owned.code, 2, owned.stderr);
  t.regex(
    owned.stderr,
    /data directory \S+\/foreign belongs to uid 65534, not to this user \(uid 0\).*chown 0 \S+\/foreign && chmod 700 \S+\/foreign\n$/,
  );
  t.is(await modeOf(writable), 0o775, "nothing changed");
  t.deepEqual(await readdir(writable), []);
  t.deepEqual(await readdir(foreign), []);
});

test("prepareDataDir: a new directory (and its parents) 0700; an existing readable one made 0700 and its secret files 0600, with warnings", async (t) => {
  const dir = await tempDir(t);
  const quiet = createLogger("t", "silent");
  const fresh = join(dir, "a", "b");
  await prepareDataDir(fresh, { logger: quiet });
  t.is(await modeOf(join(dir, "a")), 0o700);
  t.is(await modeOf(fresh), 0o700);

  const old = join(dir, "old");
  await mkdir(old);
  await chmod(old, 0o750);
  await writeFile(join(old, "admin.token"), "t\n", { mode: 0o644 });
  await chmod(join(old, "admin.token"), 0o644);
  const { logger, lines } = await warnings();
  const text = () => lines.join("");
  await prepareDataDir(old, { logger, secretFiles: ["admin.token", "absent.key"] });
  t.is(await modeOf(old), 0o700);
  t.is(await modeOf(join(old, "admin.token")), 0o600);
  t.regex(text(), /data directory \S+\/old was readable by group \(mode 0750\): made 0700/);
  t.regex(text(), /admin\.token holds a secret but was readable by group and others \(mode 0644\)/);

  const open = join(dir, "open");
  await mkdir(open);
  await chmod(open, 0o707);
  await t.throwsAsync(prepareDataDir(open, { logger: quiet }), {
    instanceOf: UnsafeDataDirError,
    message: /is writable by others \(mode 0707\).*chmod 700 /,
  });
});

test("a manager makes its data directory 0700, and on a later start fixes a directory and token files made readable since, saying so", async (t) => {
  const data = join(await tempDir(t), "manager");
  const quiet = createLogger("m", "silent");
  const first = await startManager({ listen: "127.0.0.1:0", dataDir: data, logger: quiet });
  await first.close();
  t.is(await modeOf(data), 0o700);
  for (const file of ["admin.token", "worker.token", "secrets.key"]) {
    t.is(await modeOf(join(data, file)), 0o600, file);
  }
  await chmod(data, 0o755);
  await chmod(join(data, "secrets.key"), 0o644);
  await chmod(join(data, "worker.token"), 0o640);
  const { logger, lines } = await warnings();
  const text = () => lines.join("");
  const again = await startManager({ listen: "127.0.0.1:0", dataDir: data, logger });
  t.teardown(() => again.close());
  t.is(await modeOf(data), 0o700);
  t.is(await modeOf(join(data, "secrets.key")), 0o600);
  t.is(await modeOf(join(data, "worker.token")), 0o600);
  t.regex(text(), /was readable by group and others \(mode 0755\): made 0700/);
  t.regex(text(), /secrets\.key holds a secret but was readable by group and others/);
  t.regex(text(), /worker\.token holds a secret but was readable by group \(mode 0640\)/);
});

test("a worker keeps its credential in a file of its own: a link planted under its name is replaced, not written through; its data directory is 0700", async (t) => {
  const m = await startTestManager(t);
  const dir = await tempDir(t);
  const data = join(dir, "worker");
  await mkdir(data);
  await chmod(data, 0o755);
  const x = await bait(dir);
  await symlink(x, join(data, "credential"));
  const w = await startWorker({
    ...TEST_SANDBOXES,
    manager: m.address,
    token: m.workerToken,
    listen: "127.0.0.1:0",
    dataDir: data,
    driver: createHollowDriver(),
    logger: createLogger("w", "silent"),
  });
  t.teardown(() => w.close());
  await eventually(async () => {
    if (!(await lstat(join(data, "credential"))).isFile()) throw new Error("not joined yet");
  }, 10_000);
  t.is(await readFile(x, "utf8"), "", "the credential did not go through the link");
  t.is(await modeOf(join(data, "credential")), 0o600);
  t.regex(await readFile(join(data, "credential"), "utf8"), /^cube_/);
  t.is(await modeOf(data), 0o700);
  const shared = join(dir, "shared");
  await mkdir(shared);
  await chmod(shared, 0o770);
  await t.throwsAsync(
    startWorker({
      ...TEST_SANDBOXES,
      manager: m.address,
      token: m.workerToken,
      listen: "127.0.0.1:0",
      dataDir: shared,
      driver: createHollowDriver(),
      logger: createLogger("w", "silent"),
    }),
    { instanceOf: UnsafeDataDirError, message: /writable by group \(mode 0770\)/ },
  );
  t.deepEqual(await readdir(shared), [], "nothing made in it");
});
