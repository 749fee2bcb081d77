/**
 * Pulls from the local registry (127.0.0.1:5000, started by `npm run setup`): byte
 * progress summed over layers, the image present afterwards, and readable errors for
 * a missing tag or an unreachable registry. Nothing leaves the machine.
 */
import { randomUUID } from "node:crypto";
import test from "ava";
import type Docker from "dockerode";
import { createDockerDriver } from "../worker/docker/driver.js";
import { DriverError, type PullProgress } from "../worker/tasks/driver.js";
import { docker, HTTP_IMAGE, removeContainers, requireDocker } from "./fixtures.js";
import { stallingRegistry } from "./stalling-registry.js";

const REGISTRY = "127.0.0.1:5000";
const REPO = `${REGISTRY}/cube-test/blob`;
const driver = createDockerDriver();

test.before(async () => {
  await requireDocker();
  try {
    await fetch(`http://${REGISTRY}/v2/`, { signal: AbortSignal.timeout(3000) });
  } catch (error) {
    throw new Error(
      `the local registry on ${REGISTRY} does not answer (${(error as Error).message}): run \`npm run setup\``,
    );
  }
});
test.after.always(() => driver.close());

/** Follows a push or commit stream to its end; Docker reports failures inside it. */
async function follow(stream: NodeJS.ReadableStream): Promise<void> {
  const events = await new Promise<{ error?: string }[]>((resolve, reject) =>
    docker.modem.followProgress(stream, (error: Error | null, output: { error?: string }[]) =>
      error ? reject(error) : resolve(output),
    ),
  );
  const failed = events.find((event) => event.error);
  if (failed) throw new Error(failed.error);
}

async function removeImage(ref: string): Promise<void> {
  await docker
    .getImage(ref)
    .remove({ force: true })
    .catch(() => undefined);
}

/**
 * An image with a 3 MiB layer of random bytes (incompressible, and unknown to the
 * engine once the local tag is gone), so that the pull has real bytes to download.
 */
async function pushedRandomImage(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const tag = `t${randomUUID().slice(0, 12)}`;
  const ref = `${REPO}:${tag}`;
  const label = `cube.worker=test-registry-${tag}`;
  t.teardown(() => removeContainers(label));
  t.teardown(() => removeImage(ref));
  const container: Docker.Container = await docker.createContainer({
    Image: HTTP_IMAGE,
    Cmd: ["sh", "-c", "dd if=/dev/urandom of=/blob bs=1024 count=3072 2>/dev/null"],
    Labels: { "cube.worker": label.split("=")[1] ?? "" },
  });
  await container.start();
  const { StatusCode } = (await container.wait()) as { StatusCode: number };
  if (StatusCode !== 0) throw new Error(`making the random layer exited ${StatusCode}`);
  await container.commit({ repo: REPO, tag });
  await container.remove({ force: true });
  await follow(await docker.getImage(ref).push({ authconfig: {} }));
  await docker.getImage(ref).remove();
  return ref;
}

test("a pull from the local registry reports byte progress, throttled, and leaves the image", async (t) => {
  const ref = await pushedRandomImage(t);
  await t.throwsAsync(docker.getImage(ref).inspect(), undefined, "the local copy should be gone");
  const progress: PullProgress[] = [];
  const began = Date.now();
  await driver.pull(ref, (p) => progress.push(p));
  const ms = Date.now() - began;
  t.log(`pull of a 3 MiB layer: ${ms} ms, ${progress.length} progress reports`);
  await t.notThrowsAsync(docker.getImage(ref).inspect());
  t.true(progress.length >= 1);
  const last = progress.at(-1);
  t.is(last?.message, `pulled ${ref}`);
  t.true((last?.totalBytes ?? 0n) >= 3_000_000n, `total ${last?.totalBytes}`);
  t.is(last?.currentBytes, last?.totalBytes);
  // At most five reports a second, plus the final one.
  t.true(progress.length <= Math.ceil(ms / 200) + 2, `${progress.length} reports in ${ms} ms`);
  for (let i = 1; i < progress.length; i++) {
    t.true(
      (progress[i]?.currentBytes ?? 0n) >= (progress[i - 1]?.currentBytes ?? 0n),
      "progress went back",
    );
  }
});

test("an image already present is not pulled", async (t) => {
  const progress: PullProgress[] = [];
  await driver.pull(HTTP_IMAGE, (p) => progress.push(p));
  t.is(progress.length, 0);
});

test("a missing tag is a DriverError image-not-found quoting the registry", async (t) => {
  const ref = `${REPO}:missing-${randomUUID().slice(0, 8)}`;
  t.teardown(() => removeImage(ref));
  const error = await t.throwsAsync(
    driver.pull(ref, () => undefined),
    { instanceOf: DriverError },
  );
  t.is((error as DriverError).kind, "image-not-found");
  t.true(error?.message.includes(ref), error?.message);
  t.regex(error?.message ?? "", /manifest unknown|not found/i);
});

test("an unreachable registry is a DriverError image-not-found saying so", async (t) => {
  // Port 1 on loopback: nothing listens there, and nothing leaves the machine.
  const ref = "127.0.0.1:1/cube-test/nothing:1";
  const error = await t.throwsAsync(
    driver.pull(ref, () => undefined),
    { instanceOf: DriverError },
  );
  t.is((error as DriverError).kind, "image-not-found");
  t.true(error?.message.includes(ref), error?.message);
  t.regex(error?.message ?? "", /connection refused/i);
});

test("a pull that stops making progress is cancelled after the stall timeout, and the next pull asks the registry afresh", async (t) => {
  const registry = await stallingRegistry(`t${randomUUID().slice(0, 8)}`);
  t.teardown(() => registry.close());
  t.teardown(() => removeImage(registry.image));
  const stallMs = 1500;
  const stalling = createDockerDriver({ pullStallMs: stallMs });
  t.teardown(() => stalling.close());
  const began = Date.now();
  const progress: PullProgress[] = [];
  const pulling = stalling.pull(registry.image, (p) => progress.push(p));
  // The layer's first bytes were progress: the stall is counted from the last of them.
  const first = await Promise.race([
    registry.layerStarted.then(() => "layer bytes sent"),
    pulling.then(
      () => "pulled",
      (error: Error) => `failed first: ${error.message}`,
    ),
  ]);
  t.is(first, "layer bytes sent");
  const error = await t.throwsAsync(pulling, { instanceOf: DriverError });
  const ms = Date.now() - began;
  t.log(`pull gave up ${ms} ms after it began (stall timeout ${stallMs} ms)`);
  t.is((error as DriverError).kind, "pull-stalled");
  t.is(
    error?.message,
    `pulling image ${registry.image} stalled: no progress for 1.5s, so the pull was cancelled (is the registry answering?)`,
  );
  // The last figure shown is the bytes that came before the stall, not one held back by the
  // throttle (the stream sends several events within its 200 ms).
  const last = progress.at(-1);
  t.regex(last?.message ?? "", /^Downloading /);
  t.true((last?.currentBytes ?? 0n) > 0n, `last progress: ${last?.message} ${last?.currentBytes}`);
  t.is(last?.totalBytes, 4n * 1024n * 1024n);
  t.true(ms >= stallMs, `gave up after ${ms} ms`);
  t.true(ms < stallMs + 10_000, `gave up after ${ms} ms`);
  await t.throwsAsync(docker.getImage(registry.image).inspect(), undefined, "no image left");
  // Cancelling the request cancelled the engine's download: a retry downloads again rather
  // than waiting on the stalled transfer (Docker shares one transfer between pulls).
  t.is(registry.layerRequests(), 1);
  const again = await t.throwsAsync(
    stalling.pull(registry.image, () => undefined),
    { instanceOf: DriverError },
  );
  t.is((again as DriverError).kind, "pull-stalled");
  t.is(registry.layerRequests(), 2, "the second pull did not ask for the layer again");
});
