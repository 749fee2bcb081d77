/**
 * Warm network sandboxes against the real engine: a task without ports joins a ready sandbox
 * and the pool fills again; a task with ports keeps its own network; a sandbox goes with its
 * container (removed, or exited); a dead sandbox falls back to the container's own network;
 * a restarted worker keeps the sandboxes its running tasks hold and takes ready ones back; a
 * missing image turns the pool off, not the starts. Serial: a dozen workers' worth of starts at
 * once would load the engine that other files' timing-bound tests share.
 */
import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import test, { type ExecutionContext } from "ava";
import { TaskSpecSchema } from "../gen/cube/v1/task_pb.js";
import { WorkerMetrics } from "../worker/api/metrics.js";
import { createDockerDriver } from "../worker/docker/driver.js";
import {
  DEFAULT_SANDBOX_IMAGE,
  LABEL_SANDBOX,
  SandboxPool,
  sandboxOptions,
} from "../worker/docker/sandbox-pool.js";
import type { ContainerRequest, Driver } from "../worker/tasks/driver.js";
import {
  docker,
  fetchContainer,
  HTTP_IMAGE,
  removeContainers,
  requireDocker,
  warnings,
} from "./fixtures.js";

test.before(() => requireDocker());

/** A driver with a pool of `size` for a worker id of the test's own, cleaned up after. */
async function pooled(
  t: ExecutionContext,
  size = 2,
  image = DEFAULT_SANDBOX_IMAGE,
  workerId = `test-sandbox-${randomUUID()}`,
) {
  const { lines, logger } = await warnings();
  const metrics = new WorkerMetrics();
  const driver = createDockerDriver({
    sandboxes: { size, image },
    logger,
    onStarted: (network) => metrics.containerStarted(network),
    readSandboxes: (ready) => metrics.readSandboxesFrom(ready),
  });
  t.teardown(async () => {
    await driver.close();
    await removeContainers(`cube.worker=${workerId}`);
  });
  metricsOf.set(driver, metrics);
  return { workerId, driver, lines, metrics };
}

function request(
  workerId: string,
  spec: MessageInitShape<typeof TaskSpecSchema> = {},
): ContainerRequest {
  return {
    taskId: `task-${randomUUID().slice(0, 8)}`,
    generation: 1n,
    workerId,
    spec: create(TaskSpecSchema, { image: HTTP_IMAGE, ...spec }),
  };
}

/** The worker's sandboxes as the engine has them. */
async function sandboxes(workerId: string, all = false) {
  return docker.listContainers({ all, filters: { label: [`${LABEL_SANDBOX}=${workerId}`] } });
}

/** The metrics each driver of {@link pooled} reports to. */
const metricsOf = new WeakMap<Driver, WorkerMetrics>();

/** The worker metrics' sandbox figures: starts by network, and ready sandboxes. */
async function figures(metrics: WorkerMetrics) {
  const starts = await metrics.registry
    .getSingleMetric("cube_worker_container_starts_total")
    ?.get();
  const ready = await metrics.registry
    .getSingleMetric("cube_worker_network_sandboxes_ready")
    ?.get();
  const started = (network: string) =>
    starts?.values.find((v) => v.labels.network === network)?.value ?? -1;
  return { sandbox: started("sandbox"), own: started("own"), ready: ready?.values[0]?.value };
}

/** Waits until `check` holds (checked every 100 ms), failing after `ms`. */
async function until(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await delay(100);
  }
}

async function networkMode(containerId: string): Promise<string | undefined> {
  return (await docker.getContainer(containerId).inspect()).HostConfig.NetworkMode;
}

/** Starts the pool for `workerId` and waits for `size` ready sandboxes. */
async function warm(driver: Driver, workerId: string, size: number): Promise<string[]> {
  await driver.recover(workerId);
  // Running in the engine a moment before the pool counts it ready: both are waited for.
  await until(`${size} ready sandboxes`, 20_000, async () => {
    if ((await sandboxes(workerId)).length !== size) return false;
    const metrics = metricsOf.get(driver);
    return metrics === undefined || (await figures(metrics)).ready === size;
  });
  return (await sandboxes(workerId)).map((c) => c.Id);
}

test.serial("a task without ports joins a ready sandbox and the pool fills again", async (t) => {
  const { workerId, driver, metrics } = await pooled(t, 2);
  const ready = await warm(driver, workerId, 2);
  t.like(await figures(metrics), { sandbox: 0, own: 0, ready: 2 });
  const info = await driver.start(request(workerId, { command: ["sh", "-c", "sleep 60"] }));
  t.like(await figures(metrics), { sandbox: 1, own: 0, ready: 1 });
  t.true(info.running);
  const mode = await networkMode(info.containerId);
  const joined = mode?.replace(/^container:/, "");
  t.true(mode?.startsWith("container:"), `network mode ${mode}`);
  t.true(ready.includes(joined ?? ""), "joined one of the ready sandboxes");
  const sandbox = await docker.getContainer(joined ?? "").inspect();
  t.regex(sandbox.NetworkSettings.Networks.bridge?.IPAddress ?? "", /^\d+\.\d+\.\d+\.\d+$/);
  // The pool makes another once no start came for a moment: two ready, one held.
  await until(
    "the pool to fill again",
    20_000,
    async () => (await sandboxes(workerId)).length === 3 && (await figures(metrics)).ready === 2,
  );
});

test.serial("the joined task's network reaches a container on the bridge", async (t) => {
  const { workerId, driver } = await pooled(t, 1);
  await warm(driver, workerId, 1);
  const server = await driver.start(request(workerId, { ports: [{ containerPort: 80 }] }));
  const serverIp = (await docker.getContainer(server.containerId).inspect()).NetworkSettings
    .Networks.bridge?.IPAddress;
  // busybox's wget crashes in this image: nc speaks the HTTP.
  const client = await driver.start(
    request(workerId, {
      command: ["sh", "-c"],
      args: [
        `printf 'GET /health HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${serverIp} 80 | head -1; sleep 60`,
      ],
    }),
  );
  t.true((await networkMode(client.containerId))?.startsWith("container:"));
  let out = "";
  await until("the client's answer in its logs", 10_000, async () => {
    out = "";
    for await (const chunk of driver.logs(client.containerId, {
      follow: false,
      tail: 0,
      signal: AbortSignal.timeout(5000),
    })) {
      out += Buffer.from(chunk.data).toString();
    }
    return out.length > 0;
  });
  t.regex(out, /^HTTP\/1\.[01] 200/);
});

test.serial("a task with ports gets its own network, not a sandbox", async (t) => {
  const { workerId, driver, metrics } = await pooled(t, 1);
  await warm(driver, workerId, 1);
  const info = await driver.start(request(workerId, { ports: [{ containerPort: 80 }] }));
  t.false((await networkMode(info.containerId))?.startsWith("container:"));
  t.like(await figures(metrics), { sandbox: 0, own: 1, ready: 1 });
  const response = await fetchContainer(`http://127.0.0.1:${info.ports[0]?.hostPort}/health`);
  t.is(response.status, 200);
  t.is((await sandboxes(workerId)).length, 1, "the ready sandbox is still there");
});

test.serial(
  "a sandbox goes with its container: removed when the container is, and when it exits",
  async (t) => {
    const { workerId, driver, metrics } = await pooled(t, 3);
    await warm(driver, workerId, 3);
    const kept = await driver.start(request(workerId));
    const keptSandbox = (await networkMode(kept.containerId))?.replace(/^container:/, "") ?? "";
    const exiting = await driver.start(request(workerId, { command: ["sh", "-c", "sleep 1"] }));
    const exitingSandbox =
      (await networkMode(exiting.containerId))?.replace(/^container:/, "") ?? "";
    t.not(keptSandbox, exitingSandbox);
    await driver.wait(exiting.containerId);
    await until("the exited container's sandbox to go", 10_000, async () => {
      return !(await sandboxes(workerId, true)).some((c) => c.Id === exitingSandbox);
    });
    // One that exits at once, before the start has even looked at it.
    const quick = await driver.start(request(workerId, { command: ["true"] }));
    const quickSandbox = (await networkMode(quick.containerId))?.replace(/^container:/, "") ?? "";
    t.true(quickSandbox.length === 64, `the quick one joined a sandbox: ${quickSandbox}`);
    // Counted as started in a sandbox, though it had ended by the time the start looked.
    t.like(await figures(metrics), { sandbox: 3, own: 0 });
    await until("the quick container's sandbox to go", 10_000, async () => {
      return !(await sandboxes(workerId, true)).some((c) => c.Id === quickSandbox);
    });
    await driver.destroy(kept.containerId);
    await until("the removed container's sandbox to go", 10_000, async () => {
      return !(await sandboxes(workerId, true)).some((c) => c.Id === keptSandbox);
    });
    t.pass();
  },
);

test.serial(
  "a sandbox that dies between its claim and the start: the start falls back to the container's own network",
  async (t) => {
    // The claim is made as start() is called, before anything is awaited; the kill, sent just
    // before, reaches the engine before the create and start do. Should the engine take them in
    // the other order (the container then started in the sandbox, and is stopped as its network
    // went), it is tried again, at most 3 times.
    for (let attempt = 1; ; attempt++) {
      const { workerId, driver, lines } = await pooled(t, 1);
      const [dead] = await warm(driver, workerId, 1);
      const kill = docker.getContainer(dead ?? "").kill();
      const started = driver.start(request(workerId, { command: ["sh", "-c", "sleep 60"] }));
      await kill;
      const info = await started;
      const mode = await networkMode(info.containerId);
      if (mode === `container:${dead}` && attempt < 3) {
        t.log(`attempt ${attempt}: the start came first`);
        continue;
      }
      t.not(mode, `container:${dead}`);
      t.false(mode?.startsWith("container:"));
      t.true(info.running);
      t.true(lines.some((line) => line.includes("starting with its own network")));
      await until("the dead sandbox to be removed", 10_000, async () => {
        return !(await sandboxes(workerId, true)).some((c) => c.Id === dead);
      });
      return;
    }
  },
);

test.serial(
  "a restarted worker keeps what its running tasks hold, takes ready ones back up to its size, removes the rest",
  async (t) => {
    const first = await pooled(t, 2);
    const { workerId } = first;
    await warm(first.driver, workerId, 2);
    const held = await first.driver.start(request(workerId, { command: ["sh", "-c", "sleep 60"] }));
    const brief = await first.driver.start(request(workerId, { command: ["sh", "-c", "sleep 1"] }));
    const heldSandbox = (await networkMode(held.containerId))?.replace(/^container:/, "") ?? "";
    const briefSandbox = (await networkMode(brief.containerId))?.replace(/^container:/, "") ?? "";
    // The agent stops (nothing watches exits now); the brief task's container ends meanwhile.
    await first.driver.close();
    await until("the brief container to exit", 10_000, async () => {
      return !(await docker.getContainer(brief.containerId).inspect()).State.Running;
    });
    // Two more ready ones, as if the first run had filled its pool again before it stopped.
    const ready: string[] = [];
    for (let i = 0; i < 2; i++) {
      const c = await docker.createContainer(sandboxOptions(workerId, DEFAULT_SANDBOX_IMAGE));
      await c.start();
      ready.push(c.id);
    }
    // The next run of the worker, with a pool of 1.
    const { driver: again } = await pooled(t, 1, DEFAULT_SANDBOX_IMAGE, workerId);
    await again.recover(workerId);
    let left: string[] = [];
    await until("the sandboxes no task needs to be removed", 10_000, async () => {
      left = (await sandboxes(workerId, true)).map((c) => c.Id);
      return left.length === 2;
    });
    t.true(left.includes(heldSandbox), "the running task's sandbox stays");
    t.false(left.includes(briefSandbox), "the ended task's sandbox is removed");
    const [kept] = left.filter((id) => id !== heldSandbox);
    t.true(ready.includes(kept ?? ""), "one ready sandbox is taken back");
    // It is handed out at once: no new one was made for this start.
    const next = await again.start(request(workerId));
    t.is(await networkMode(next.containerId), `container:${kept}`);
    t.true((await docker.getContainer(held.containerId).inspect()).State.Running);
  },
);

test.serial("a missing sandbox image turns the pool off, not the starts", async (t) => {
  const { workerId, driver, lines } = await pooled(t, 2, "cube/no-such-pause:none");
  await driver.recover(workerId);
  await until("the warning", 10_000, async () =>
    lines.some((line) => line.includes("cube/no-such-pause:none is not on this engine")),
  );
  const info = await driver.start(request(workerId));
  t.true(info.running);
  t.false((await networkMode(info.containerId))?.startsWith("container:"));
  t.is((await sandboxes(workerId, true)).length, 0);
});

test.serial("a stopping worker leaves its ready sandboxes for its next start", async (t) => {
  const { workerId, driver } = await pooled(t, 2);
  const ready = await warm(driver, workerId, 2);
  await driver.close();
  const { driver: again } = await pooled(t, 2, DEFAULT_SANDBOX_IMAGE, workerId);
  await again.recover(workerId);
  const first = await again.start(request(workerId));
  const second = await again.start(request(workerId));
  t.deepEqual(
    [await networkMode(first.containerId), await networkMode(second.containerId)].sort(),
    ready.map((id) => `container:${id}`).sort(),
  );
});

test.serial(
  "an engine only suspected gone: the pool looks again and takes its running sandboxes back, none made anew",
  async (t) => {
    const workerId = `test-sandbox-${randomUUID()}`;
    t.teardown(() => removeContainers(`cube.worker=${workerId}`));
    const pool = new SandboxPool({
      docker,
      size: 2,
      image: DEFAULT_SANDBOX_IMAGE,
      timed: (_what, call) => call({}),
      quietMs: 100,
    });
    t.teardown(() => pool.close());
    await pool.refresh(workerId, () => new Set());
    await until("2 ready", 20_000, async () => pool.ready === 2);
    const before = (await sandboxes(workerId)).map((c) => c.Id).sort();
    // One of them dies meanwhile: it is removed, and one new one made in its place.
    await docker.getContainer(before[0] ?? "").kill();
    pool.invalidate();
    t.is(pool.ready, 0, "none handed out while in doubt");
    await until("2 ready again", 20_000, async () => pool.ready === 2);
    const after = (await sandboxes(workerId, true)).map((c) => c.Id);
    t.true(after.includes(before[1] ?? ""), "the running one is taken back");
    t.false(after.includes(before[0] ?? ""), "the dead one is removed");
    t.is(after.length, 2);
  },
);

test.serial(
  "a joined sandbox is named for its container; one killed under a running container stops that container",
  async (t) => {
    const { workerId, driver, lines } = await pooled(t, 1);
    await warm(driver, workerId, 1);
    const info = await driver.start(request(workerId, { command: ["sh", "-c", "sleep 60"] }));
    const sandbox = (await networkMode(info.containerId))?.replace(/^container:/, "") ?? "";
    await until("the sandbox to take its container's name", 10_000, async () => {
      const { Name } = await docker.getContainer(sandbox).inspect();
      return Name === `/${info.name}-net`;
    });
    const exited = driver.wait(info.containerId);
    await docker.getContainer(sandbox).kill();
    // Its network went with the sandbox: the container is stopped, so its task restarts.
    const status = await exited;
    t.is(status.exitCode, 137);
    t.true(lines.some((line) => line.includes("its network is gone")));
    await until("the dead sandbox to be removed", 10_000, async () => {
      return !(await sandboxes(workerId, true)).some((c) => c.Id === sandbox);
    });
  },
);

test.serial(
  "a ready sandbox killed from outside is replaced without waiting for a start to fail on it",
  async (t) => {
    const { workerId, driver, metrics } = await pooled(t, 1);
    const [ready] = await warm(driver, workerId, 1);
    await docker.getContainer(ready ?? "").kill();
    // Running a moment before the pool counts it ready: both are waited for.
    await until("a new ready sandbox", 20_000, async () => {
      const list = await sandboxes(workerId);
      return list.length === 1 && list[0]?.Id !== ready && (await figures(metrics)).ready === 1;
    });
    const info = await driver.start(request(workerId));
    t.not(await networkMode(info.containerId), `container:${ready}`);
    t.true((await networkMode(info.containerId))?.startsWith("container:"));
  },
);

test.serial(
  "with --warm-sandboxes 0 a worker keeps none ready but still removes the sandboxes of an earlier run and of ended containers",
  async (t) => {
    const first = await pooled(t, 2);
    const { workerId } = first;
    await warm(first.driver, workerId, 2);
    const held = await first.driver.start(request(workerId, { command: ["sh", "-c", "sleep 60"] }));
    const heldSandbox = (await networkMode(held.containerId))?.replace(/^container:/, "") ?? "";
    await first.driver.close();
    const { driver: off } = await pooled(t, 0, DEFAULT_SANDBOX_IMAGE, workerId);
    await off.recover(workerId);
    await until("the ready ones of the earlier run to go", 10_000, async () => {
      const left = (await sandboxes(workerId, true)).map((c) => c.Id);
      return left.length === 1 && left[0] === heldSandbox;
    });
    const own = await off.start(request(workerId));
    t.false((await networkMode(own.containerId))?.startsWith("container:"));
    await off.destroy(held.containerId);
    await until("the held one to go with its container", 10_000, async () => {
      return (await sandboxes(workerId, true)).length === 0;
    });
  },
);
