/**
 * Disconnection is not death, with real processes and the real Docker engine: a worker
 * restarted with SIGTERM keeps every container; a manager paused with SIGSTOP for 10 s
 * replaces nothing; a worker killed with kill -9 and back ~2 s later (what happens is logged:
 * with a second worker its tasks are replaced, alone its copies are kept); an engine that
 * goes away and comes back (the worker reaches Docker through a socket the test cuts, while
 * containers die) heals restart-always tasks without help. Each test logs its figures.
 */
import { once } from "node:events";
import { createClient } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import { EngineSocket } from "../bench/faults-kit.js";
import { RestartMode, type Task, TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { EngineStatus, WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { WorkerService } from "../gen/cube/v1/worker_service_pb.js";
import { grpcTransport } from "../lib/rpc/client.js";
import {
  allTasks,
  docker,
  HTTP_IMAGE,
  removeContainers,
  requireDocker,
  tempDir,
} from "./fixtures.js";
import { eventually } from "./manager-harness.js";
import { type Spawned, spawnCube } from "./manager-process.js";

test.before(async () => {
  await requireDocker();
});

/** A manager and workers as processes (no tokens: this is about liveness, not identity). */
class Procs {
  manager: Spawned | undefined;
  readonly workers = new Map<string, Spawned>();
  readonly #all: Spawned[] = [];
  readonly #ids = new Set<string>();

  constructor(
    readonly t: ExecutionContext,
    readonly dir: string,
  ) {
    t.teardown(async () => {
      for (const p of this.#all) {
        if (p.child.signalCode === "SIGSTOP" || p.child.exitCode === null) p.child.kill("SIGCONT");
      }
      await Promise.all(this.#all.map((p) => p.kill9()));
      for (const id of this.#ids) await removeContainers(`cube.worker=${id}`);
      if (!t.passed || process.env.CUBE_TEST_LOGS) t.log(this.logs().slice(-20_000));
    });
  }

  async startManager(env: Record<string, string> = {}): Promise<Spawned> {
    const m = await spawnCube(quiet, "manager/main.ts", {
      CUBE_DATA_DIR: `${this.dir}/manager`,
      CUBE_LISTEN: this.manager ? this.manager.address : "127.0.0.1:0",
      CUBE_AUTH: "0",
      ...env,
    });
    this.#all.push(m);
    this.manager = m;
    return m;
  }

  async startWorker(name: string, env: Record<string, string> = {}): Promise<Spawned> {
    if (!this.manager) throw new Error("start the manager first");
    const w = await spawnCube(quiet, "worker/main.ts", {
      CUBE_MANAGER: this.manager.address,
      CUBE_LISTEN: "127.0.0.1:0",
      CUBE_NAME: name,
      CUBE_DATA_DIR: `${this.dir}/${name}`,
      ...env,
    });
    this.#ids.add(w.id);
    this.#all.push(w);
    this.workers.set(name, w);
    return w;
  }

  logs(): string {
    return this.#all.map((p) => p.logs()).join("\n");
  }

  clients() {
    const transport = grpcTransport(this.manager?.address ?? "");
    return {
      tasks: createClient(TaskService, transport),
      workers: createClient(WorkerService, transport),
    };
  }
}

const quiet = { teardown: () => undefined };

/** SIGTERM, resolving with how long the process took to exit and its code. */
async function sigterm(p: Spawned): Promise<{ ms: number; code: number | null }> {
  const started = Date.now();
  const exited = once(p.child, "exit");
  p.child.kill("SIGTERM");
  const [code] = (await exited) as [number | null];
  return { ms: Date.now() - started, code };
}

/** Running containers per task id, of the given workers. */
async function containers(workerIds: string[]): Promise<Map<string, string[]>> {
  const byTask = new Map<string, string[]>();
  for (const id of workerIds) {
    const list = await docker.listContainers({ filters: { label: [`cube.worker=${id}`] } });
    for (const c of list) {
      const task = c.Labels["cube.task"] ?? "";
      byTask.set(task, [...(byTask.get(task) ?? []), c.Id]);
    }
  }
  return byTask;
}

async function allRunning(
  tasks: ReturnType<Procs["clients"]>["tasks"],
  ms: number,
  check: (task: Task) => boolean = () => true,
): Promise<Task[]> {
  return eventually(async () => {
    const all = await allTasks(tasks);
    const not = all.filter((x) => x.state !== TaskState.RUNNING || !check(x));
    if (not.length > 0) {
      throw new Error(
        `${not.length} not there yet: ${not.map((x) => `${TaskState[x.state]} ${x.reason}`).join("; ")}`,
      );
    }
    return all;
  }, ms);
}

async function runWeb(tasks: ReturnType<Procs["clients"]>["tasks"], n: number, extra = {}) {
  for (let i = 0; i < n; i++) {
    await tasks.runTask({
      id: `web-${i}`,
      spec: {
        name: `web-${i}`,
        image: HTTP_IMAGE,
        ports: [{ containerPort: 80 }],
        resources: { cpu: 0.1 },
        ...extra,
      },
    });
  }
}

async function readyWorkers(workers: ReturnType<Procs["clients"]>["workers"], n: number) {
  await eventually(async () => {
    const { workers: list } = await workers.listWorkers({});
    const ready = list.filter((w) => w.status === WorkerStatus.READY).length;
    if (ready !== n) throw new Error(`${ready}/${n} READY`);
  }, 20_000);
}

test.serial(
  "worker SIGTERM and restart: its tasks are UNKNOWN meanwhile, not replaced; the same containers are adopted back (0 replaced)",
  async (t) => {
    const procs = new Procs(t, await tempDir(t));
    await procs.startManager({ CUBE_DOWN_GRACE: "1000" });
    const a = await procs.startWorker("wa");
    const b = await procs.startWorker("wb");
    const { tasks, workers } = procs.clients();
    await readyWorkers(workers, 2);
    await runWeb(tasks, 6);
    const before = await allRunning(tasks, 60_000);
    const onA = before.filter((x) => x.workerId === a.id);
    t.true(onA.length >= 2, `${onA.length} tasks on wa`);
    const idsBefore = await containers([a.id, b.id]);

    const term = await sigterm(a);
    t.is(term.code, 0);
    t.regex(a.logs(), /worker stopped; containers left running/);
    const lost = await eventually(async () => {
      const all = await allTasks(tasks);
      const unknown = all.filter((x) => x.workerId === a.id && x.state === TaskState.UNKNOWN);
      if (unknown.length !== onA.length) throw new Error(`${unknown.length} UNKNOWN`);
      return unknown;
    }, 10_000);
    t.regex(lost[0]?.reason ?? "", /restarting \(SIGTERM\)/);
    // Well past the down grace (1 s): the restart grace (30 s) holds.
    await new Promise((r) => setTimeout(r, 3000));
    const restartedAt = Date.now();
    await procs.startWorker("wa");
    const after = await allRunning(tasks, 30_000);
    const back = Date.now() - restartedAt;
    for (const task of onA) {
      const now = after.find((x) => x.id === task.id);
      t.is(now?.workerId, a.id, `${task.id} stays on wa`);
      t.is(now?.generation, task.generation, `${task.id}: same generation`);
    }
    const idsAfter = await containers([a.id, b.id]);
    const replaced = [...idsBefore].filter(([task, ids]) => idsAfter.get(task)?.[0] !== ids[0]);
    t.deepEqual(replaced, [], "the same container for every task");
    t.true(
      [...idsAfter.values()].every((ids) => ids.length === 1),
      "one container per task",
    );
    t.log(
      `SIGTERM → exit ${term.ms} ms; ${onA.length} tasks UNKNOWN for ~${3000 + back} ms; restart → all RUNNING ${back} ms; containers replaced: ${replaced.length}`,
    );
  },
);

test.serial(
  "manager SIGSTOP 10 s then SIGCONT: no worker is blamed, no task replaced (0 containers replaced)",
  async (t) => {
    const procs = new Procs(t, await tempDir(t));
    const manager = await procs.startManager();
    const a = await procs.startWorker("wa");
    const b = await procs.startWorker("wb");
    const { tasks, workers } = procs.clients();
    await readyWorkers(workers, 2);
    await runWeb(tasks, 6);
    const before = await allRunning(tasks, 60_000);
    const idsBefore = await containers([a.id, b.id]);

    manager.child.kill("SIGSTOP");
    await new Promise((r) => setTimeout(r, 10_000));
    const resumedAt = Date.now();
    manager.child.kill("SIGCONT");
    await readyWorkers(workers, 2);
    const ready = Date.now() - resumedAt;
    // Past the start-up grace (6 s) a resumed manager gives: anything it would replace, it has.
    await new Promise((r) => setTimeout(r, 8000));
    const after = await allRunning(tasks, 20_000);
    for (const task of before) {
      const now = after.find((x) => x.id === task.id);
      t.is(now?.generation, task.generation, `${task.id}: same generation`);
      t.is(now?.workerId, task.workerId, `${task.id}: same worker`);
    }
    const idsAfter = await containers([a.id, b.id]);
    const replaced = [...idsBefore].filter(([task, ids]) => idsAfter.get(task)?.[0] !== ids[0]);
    t.deepEqual(replaced, []);
    t.regex(manager.logs(), /the manager stalled: every worker gets a fresh grace/);
    t.notRegex(manager.logs(), /worker DOWN/);
    t.log(`SIGCONT → both workers READY ${ready} ms; containers replaced: ${replaced.length}`);
  },
);

test.serial(
  "worker kill -9 and back ~2 s later: alone, its copies are kept (0 replaced); with a second worker, replacements start after the down grace and are stopped when the restarted agent is back with its copies (0 replaced)",
  async (t) => {
    const procs = new Procs(t, await tempDir(t));
    await procs.startManager({ CUBE_DOWN_GRACE: "1000" });
    const a = await procs.startWorker("wa");
    const { tasks, workers } = procs.clients();
    await readyWorkers(workers, 1);
    await runWeb(tasks, 3);
    const alone = await allRunning(tasks, 60_000);
    const idsAlone = await containers([a.id]);

    // Alone: no other worker can take its tasks, so nothing is replaced; the copies it comes
    // back with are kept.
    await a.kill9();
    const killedAt = Date.now();
    await new Promise((r) => setTimeout(r, 2000));
    await procs.startWorker("wa");
    const kept = await allRunning(tasks, 30_000, (x) => x.workerId === a.id);
    const aloneMs = Date.now() - killedAt;
    for (const task of alone) {
      t.is(kept.find((x) => x.id === task.id)?.generation, task.generation);
    }
    const idsKept = await containers([a.id]);
    const replacedAlone = [...idsAlone].filter(([task, ids]) => idsKept.get(task)?.[0] !== ids[0]);
    t.deepEqual(replacedAlone, [], "the same containers");

    // With a second worker that fits them, the tasks are placed there after the down grace
    // (the manager cannot tell a crashed agent from a dead host); when the agent is back,
    // restarted (a new agent_started_at), its copies are kept and the replacements stopped.
    const b = await procs.startWorker("wb");
    await readyWorkers(workers, 2);
    const a2 = procs.workers.get("wa") as Spawned;
    const idsTwo = await containers([a.id, b.id]);
    await a2.kill9();
    const killed2 = Date.now();
    await eventually(async () => {
      const all = await allTasks(tasks);
      const onB = all.filter((x) => x.workerId === b.id).length;
      if (onB !== alone.length) throw new Error(`${onB} placed on wb`);
    }, 10_000);
    const placedMs = Date.now() - killed2;
    await new Promise((r) => setTimeout(r, Math.max(0, 2000 - placedMs)));
    await procs.startWorker("wa");
    await eventually(async () => {
      const now = await containers([a.id, b.id]);
      for (const task of alone) {
        const n = now.get(task.id)?.length ?? 0;
        if (n !== 1) throw new Error(`${task.id}: ${n} copies`);
      }
    }, 30_000);
    const after = await allRunning(tasks, 30_000);
    const twoMs = Date.now() - killed2;
    const idsAfter = await containers([a.id, b.id]);
    const replacedTwo = [...idsTwo].filter(([task, ids]) => idsAfter.get(task)?.[0] !== ids[0]);
    const movedToB = after.filter((x) => x.workerId === b.id).length;
    t.log(
      `alone: kill -9, back after 2 s → all RUNNING (same containers) ${aloneMs} ms after the kill; replaced ${replacedAlone.length}/${alone.length}`,
    );
    t.log(
      `with a second worker: replacements placed on wb ${placedMs} ms after the kill; agent back → replaced ${replacedTwo.length}/${alone.length} (${movedToB} left on wb), one copy each ${twoMs} ms after the kill`,
    );
    t.deepEqual(replacedTwo, [], "the restarted agent's containers are kept");
    t.is(movedToB, 0, "the replacements are stopped");
    const events = (await tasks.listTaskEvents({ taskId: alone[0]?.id ?? "" })).events;
    t.true(
      events.some((e) => /its agent restarted and was back within/.test(e.message)),
      "the task's events say why its copy was kept",
    );
  },
);

test.serial(
  "the engine goes away and comes back while containers die: the worker reports it, retries, re-syncs, and restart-always tasks run again without help",
  async (t) => {
    const dir = await tempDir(t);
    const engine = new EngineSocket(`${dir}/docker.sock`);
    await engine.up();
    t.teardown(() => engine.down());
    const procs = new Procs(t, dir);
    await procs.startManager();
    const w = await procs.startWorker("wa", { CUBE_DOCKER_HOST: `unix://${engine.path}` });
    const { tasks, workers } = procs.clients();
    await readyWorkers(workers, 1);
    // A restart back-off long enough for restarts to be assigned while the engine is away.
    await runWeb(tasks, 4, {
      restartPolicy: {
        mode: RestartMode.ALWAYS,
        maxRestarts: 10,
        backoff: { seconds: 2n, nanos: 0 },
      },
    });
    const before = await allRunning(tasks, 60_000);
    const first = new Map(before.map((x) => [x.id, x]));

    // Two die while the engine answers (their restarts are due in 2 s)...
    for (const id of ["web-0", "web-1"]) {
      await docker.getContainer(first.get(id)?.containerId ?? "").kill();
    }
    await eventually(async () => {
      const all = await allTasks(tasks);
      const failed = all.filter((x) => x.state === TaskState.FAILED).length;
      if (failed !== 2) throw new Error(`${failed} FAILED`);
    }, 10_000);
    // ...then the engine goes away, and the other two die while it is away.
    await engine.down();
    const downAt = Date.now();
    for (const id of ["web-2", "web-3"]) {
      await docker.getContainer(first.get(id)?.containerId ?? "").kill();
    }
    const down = await eventually(async () => {
      const { worker } = await workers.getWorker({ id: w.id });
      if (worker?.engine?.status !== EngineStatus.DOWN) throw new Error("engine not DOWN yet");
      return worker;
    }, 10_000);
    const seenDownMs = Date.now() - downAt;
    t.regex(down.engine?.reason ?? "", /^the Docker engine does not answer: /);
    t.is(down.status, WorkerStatus.READY, "the worker itself is fine");
    await new Promise((r) => setTimeout(r, 4000 - (Date.now() - downAt)));

    await engine.up();
    const upAt = Date.now();
    const after = await allRunning(
      tasks,
      30_000,
      (x) => x.generation > (first.get(x.id)?.generation ?? 0n),
    );
    const healedMs = Date.now() - upAt;
    for (const task of after) {
      const info = await docker.getContainer(task.containerId).inspect();
      t.true(info.State.Running, `${task.id} runs`);
    }
    await eventually(async () => {
      const { worker } = await workers.getWorker({ id: w.id });
      if (worker?.engine?.status !== EngineStatus.UP) throw new Error("engine not UP yet");
    }, 10_000);
    const running = await containers([w.id]);
    t.true(
      [...running.values()].every((ids) => ids.length === 1),
      "one container per task",
    );
    // Issue 17's goal is 5 s (the fault suite reports the figure); the test checks that they
    // heal without help, within a bound a loaded CI machine keeps.
    t.log(
      `every restart-always task RUNNING ${healedMs} ms after the engine answers (goal ≤ 5,000)`,
    );
    t.true(
      healedMs <= 20_000,
      `every restart-always task RUNNING ${healedMs} ms after the engine answers`,
    );
    t.log(
      `engine cut: reported DOWN after ${seenDownMs} ms; engine back → all 4 RUNNING again ${healedMs} ms later (restarts: ${after.map((x) => x.restartCount).join(",")})`,
    );
  },
);

test.serial(
  "worker kill -9 for good: its tasks are UNKNOWN at once, then RUNNING on the other worker after the down grace (timed)",
  async (t) => {
    const procs = new Procs(t, await tempDir(t));
    await procs.startManager({ CUBE_DOWN_GRACE: "1000" });
    const a = await procs.startWorker("wa");
    const b = await procs.startWorker("wb");
    const { tasks, workers } = procs.clients();
    await readyWorkers(workers, 2);
    await runWeb(tasks, 6);
    const before = await allRunning(tasks, 60_000);
    const onA = before.filter((x) => x.workerId === a.id).map((x) => x.id);
    await a.kill9();
    const killedAt = Date.now();
    let unknownMs = -1;
    const moved = await eventually(async () => {
      const all = await allTasks(tasks);
      if (unknownMs < 0 && all.some((x) => x.state === TaskState.UNKNOWN)) {
        unknownMs = Date.now() - killedAt;
      }
      const stray = all.filter((x) => x.workerId !== b.id || x.state !== TaskState.RUNNING);
      if (stray.length > 0) throw new Error(`${stray.length} not RUNNING on wb yet`);
      return all;
    }, 30_000);
    const tookMs = Date.now() - killedAt;
    for (const id of onA) t.is(moved.find((x) => x.id === id)?.generation, 2n, id);
    // Generous: the figure is what matters (the goal is ≤ 3 s on an idle machine).
    t.true(tookMs < 15_000, `${tookMs} ms`);
    t.log(
      `kill -9 of a worker with ${onA.length} tasks: UNKNOWN seen after ${unknownMs} ms (polled), RUNNING on the other worker ${tookMs} ms after the kill`,
    );
  },
);

test.serial(
  "with --down-grace 5s, a worker killed with kill -9 and back ~2 s later keeps every container, even with a second worker (0 replaced)",
  async (t) => {
    const procs = new Procs(t, await tempDir(t));
    await procs.startManager({ CUBE_DOWN_GRACE: "5000" });
    const a = await procs.startWorker("wa");
    const b = await procs.startWorker("wb");
    const { tasks, workers } = procs.clients();
    await readyWorkers(workers, 2);
    await runWeb(tasks, 6);
    const before = await allRunning(tasks, 60_000);
    const idsBefore = await containers([a.id, b.id]);
    await a.kill9();
    const killedAt = Date.now();
    await new Promise((r) => setTimeout(r, 2000));
    await procs.startWorker("wa");
    const after = await allRunning(tasks, 30_000);
    const backMs = Date.now() - killedAt;
    for (const task of before) {
      t.is(after.find((x) => x.id === task.id)?.generation, task.generation, task.id);
    }
    const idsAfter = await containers([a.id, b.id]);
    const replaced = [...idsBefore].filter(([task, ids]) => idsAfter.get(task)?.[0] !== ids[0]);
    t.deepEqual(replaced, []);
    t.log(
      `down grace 5 s: kill -9, back after 2 s → all RUNNING ${backMs} ms after the kill; containers replaced: ${replaced.length}`,
    );
  },
);
