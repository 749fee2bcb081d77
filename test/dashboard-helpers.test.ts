/**
 * The dashboard's pure helpers, without a browser: the Scale field of a job's page and the
 * coalescing of the nodes view's ListNodes calls.
 */
import test from "ava";
import { CoalescedCall } from "../web/src/coalesced-call.js";
import { MAX_REPLICAS, parseReplicas } from "../web/src/replica-count.js";

test("the Scale field: a whole number 0-10000; empty is not 0", (t) => {
  t.is(MAX_REPLICAS, 10_000);
  t.deepEqual(parseReplicas("3"), { count: 3 });
  t.deepEqual(parseReplicas(" 0 "), { count: 0 });
  t.deepEqual(parseReplicas("10000"), { count: 10_000 });
  t.deepEqual(parseReplicas(""), { error: "type the number of replicas wanted first" });
  t.deepEqual(parseReplicas("   "), { error: "type the number of replicas wanted first" });
  for (const bad of ["10001", "-1", "1.5", "1e3", "abc", "0x10", "Infinity"]) {
    t.deepEqual(
      parseReplicas(bad),
      { error: `replicas: a whole number from 0 to 10000, not "${bad}"` },
      bad,
    );
  }
});

/** A call that ends when the test says, counting how many started. */
function controlledCall() {
  const ends: (() => void)[] = [];
  let started = 0;
  const call = new CoalescedCall(async () => {
    started++;
    await new Promise<void>((resolve) => ends.push(resolve));
  });
  const endOne = async () => {
    ends.shift()?.();
    // Let the call's settlement (and the run it may start) happen.
    await new Promise((r) => setTimeout(r, 0));
  };
  return { call, started: () => started, inFlight: () => ends.length, endOne };
}

test("ListNodes coalesced: one call in flight, requests meanwhile make one more", async (t) => {
  const c = controlledCall();
  c.call.request();
  t.is(c.started(), 1);
  // A drain moving many tasks: a burst of changes while the first call runs.
  for (let i = 0; i < 100; i++) c.call.request();
  t.is(c.started(), 1);
  t.is(c.inFlight(), 1);
  await c.endOne();
  // Exactly one more, started after the burst: it sees the latest state.
  t.is(c.started(), 2);
  t.is(c.inFlight(), 1);
  await c.endOne();
  t.is(c.started(), 2, "nothing more was asked");
  t.is(c.inFlight(), 0);
  c.call.request();
  t.is(c.started(), 3, "idle again: the next request calls at once");
  await c.endOne();
});

test("ListNodes coalesced: a failed call does not stop the next; close ends it all", async (t) => {
  let calls = 0;
  let seen: AbortSignal | undefined;
  const call = new CoalescedCall(async (signal) => {
    calls++;
    seen = signal;
    throw new Error("the manager is away");
  });
  call.request();
  await new Promise((r) => setTimeout(r, 0));
  call.request();
  t.is(calls, 2);
  call.close();
  t.true(seen?.aborted);
  call.request();
  t.is(calls, 2);
});
