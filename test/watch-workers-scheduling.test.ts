/**
 * WatchWorkers carries each worker's scheduling state (cordoned, drain) as ListNodes shows
 * it, in the same message as the worker: a watcher follows a cordon or a drain made by
 * someone else without asking ListNodes, even when the same message also brings a new
 * metrics sample (the dashboard could miss a cordon that came with one).
 */
import { createClient } from "@connectrpc/connect";
import test from "ava";
import { DrainStatus, NodeService } from "../gen/cube/v1/node_service_pb.js";
import type { WatchWorkersResponse } from "../gen/cube/v1/worker_service_pb.js";
import { FakeClock } from "./fake-clock.js";
import { eventually, harness, runningOnW1WithSpare } from "./manager-harness.js";

test("WatchWorkers sends a worker's cordon, drain progress and uncordon with the worker", async (t) => {
  const clock = new FakeClock();
  const h = await harness(t, { clock, heartbeatTimeoutMs: 3_600_000 });
  await runningOnW1WithSpare(h);
  const nodes = createClient(NodeService, h.transport);

  const seen: WatchWorkersResponse[] = [];
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const watching = (async () => {
    for await (const res of h.workers.watchWorkers({}, { signal: abort.signal })) seen.push(res);
  })().catch(() => undefined);
  const latest = (name: string) => seen.findLast((r) => r.worker?.name === name);
  await eventually(() => {
    if (!latest("w1") || !latest("w2")) throw new Error("not both workers yet");
  });
  t.false(latest("w1")?.cordoned);
  t.is(latest("w1")?.drain, undefined, "never drained");

  await nodes.cordonNode({ name: "w1" });
  await eventually(() => {
    if (!latest("w1")?.cordoned) throw new Error("cordon not sent");
  });
  t.false(latest("w2")?.cordoned, "only w1");

  await nodes.drainNode({ name: "w1" });
  await eventually(() => {
    const d = latest("w1")?.drain;
    if (d?.status !== DrainStatus.COMPLETE) {
      throw new Error(`drain ${DrainStatus[d?.status ?? 0]}, ${d?.tasksLeft} left`);
    }
  });
  const drain = latest("w1")?.drain;
  t.is(drain?.tasksTotal, 1);
  t.is(drain?.tasksLeft, 0);
  // ListNodes says the same as the watch.
  const listed = (await nodes.listNodes({})).nodes.find((n) => n.worker?.name === "w1");
  t.is(listed?.cordoned, latest("w1")?.cordoned);
  t.is(listed?.drain?.status, latest("w1")?.drain?.status);

  await nodes.uncordonNode({ name: "w1" });
  await eventually(() => {
    // After the cordon's true, the latest false is the uncordon's.
    if (latest("w1")?.cordoned !== false) throw new Error("uncordon not sent");
  });
  abort.abort();
  await watching;
});
