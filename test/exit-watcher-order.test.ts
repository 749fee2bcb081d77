/**
 * The exit watcher's ordering and its reading of OOM kills, as a pure unit: Docker is a
 * stand-in here (an event stream the test writes to, inspects the test answers), because the
 * races it pins — a later container's inspect answered first, an "oom" event after the exit —
 * cannot be produced on demand with a real engine. test/worker-restart.test.ts checks the
 * same order end to end against Docker, test/docker-driver.test.ts a real OOM kill.
 */
import { PassThrough } from "node:stream";
import test from "ava";
import type Docker from "dockerode";
import { ExitWatcher, OOM_EVENT_GRACE_MS } from "../worker/docker/exit-watcher.js";

function fakeDocker() {
  const events = new PassThrough();
  const answers = new Map<string, (state: object) => void>();
  const inspected: string[] = [];
  const docker = {
    getEvents: async () => events,
    getContainer: (id: string) => ({
      inspect: () => {
        inspected.push(id);
        return new Promise((resolve) => {
          answers.set(id, (state) => resolve({ State: state, HostConfig: { Memory: 16 << 20 } }));
        });
      },
    }),
  } as unknown as Docker;
  const exited = (code: number) => ({
    Running: false,
    Status: "exited",
    ExitCode: code,
    OOMKilled: false,
    FinishedAt: new Date().toISOString(),
  });
  return { docker, events, answers, inspected, exited };
}

test("exits are settled in the order the containers died, whichever inspect answers first", async (t) => {
  const { docker, events, answers, inspected, exited } = fakeDocker();
  const watcher = new ExitWatcher(docker, () => {});
  t.teardown(() => watcher.close());
  const order: string[] = [];
  for (const id of ["c1", "c2"]) void watcher.wait(id).then(() => order.push(id));
  // The first inspects (subscribe, then check) find both running.
  await eventually(() => inspected.length === 2);
  answers.get("c1")?.({ Running: true, Status: "running" });
  answers.get("c2")?.({ Running: true, Status: "running" });
  for (const [id, code] of [
    ["c1", 10],
    ["c2", 11],
  ] as const) {
    events.write(
      `${JSON.stringify({ Action: "die", Actor: { ID: id, Attributes: { exitCode: String(code) } }, time: 1 })}\n`,
    );
  }
  await eventually(() => inspected.length === 4);
  answers.get("c2")?.(exited(11)); // the later death answers first
  await new Promise((r) => setTimeout(r, 50));
  t.deepEqual(order, [], "c2 waits for c1");
  answers.get("c1")?.(exited(10));
  await eventually(() => order.length === 2);
  t.deepEqual(order, ["c1", "c2"]);
});

function die(events: PassThrough, id: string, code: number): void {
  events.write(
    `${JSON.stringify({ Action: "die", Actor: { ID: id, Attributes: { exitCode: String(code) } }, time: 1 })}\n`,
  );
}

/** A memory-limited container c1, waited, found running, then dead with `code`. */
async function died(code: number) {
  const fake = fakeDocker();
  const watcher = new ExitWatcher(fake.docker, () => {});
  const exit = watcher.wait("c1");
  await eventually(() => fake.inspected.length === 1);
  fake.answers.get("c1")?.({ Running: true, Status: "running" });
  die(fake.events, "c1", code);
  await eventually(() => fake.inspected.length === 2);
  fake.answers.get("c1")?.(fake.exited(code));
  return { ...fake, watcher, exit };
}

test("a SIGKILL exit whose oom event comes after it (Docker's OOMKilled false) reads out of memory", async (t) => {
  const { events, watcher, exit } = await died(137);
  t.teardown(() => watcher.close());
  await new Promise((r) => setTimeout(r, 50));
  events.write(`${JSON.stringify({ Action: "oom", Actor: { ID: "c1" }, time: 1 })}\n`);
  t.like(await exit, { exitCode: 137, reason: "out of memory" });
  t.true(watcher.oomKilled("c1"), "the driver's inspect hears of it too");
});

test("a SIGKILL exit with no oom event within the grace reads killed", async (t) => {
  const { watcher, exit } = await died(137);
  t.teardown(() => watcher.close());
  const since = performance.now();
  t.like(await exit, { exitCode: 137, reason: "exit code 137 (killed)" });
  const waited = performance.now() - since;
  t.true(waited >= OOM_EVENT_GRACE_MS - 20, `settled after ${waited} ms, before the grace`);
  t.false(watcher.oomKilled("c1"));
});

test("an exit that is not a SIGKILL's is not held for an oom event", async (t) => {
  const { watcher, exit } = await died(1);
  t.teardown(() => watcher.close());
  const since = performance.now();
  t.like(await exit, { exitCode: 1, reason: "exit code 1" });
  const waited = performance.now() - since;
  t.true(waited < OOM_EVENT_GRACE_MS / 2, `settled after ${waited} ms`);
});

async function eventually(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
}
