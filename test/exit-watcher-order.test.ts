/**
 * The exit watcher's ordering, as a pure unit: Docker is a stand-in here (an event stream
 * the test writes to, inspects the test answers), because the race it pins — a later
 * container's inspect answered first — cannot be produced on demand with a real engine.
 * test/worker-restart.test.ts checks the same order end to end against Docker.
 */
import { PassThrough } from "node:stream";
import test from "ava";
import type Docker from "dockerode";
import { ExitWatcher } from "../worker/docker/exit-watcher.js";

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
          answers.set(id, (state) => resolve({ State: state }));
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

async function eventually(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
}
