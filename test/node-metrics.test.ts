/** Node metrics: immediate answers, real probes in the background, the data dir's disk. */
import { statfs } from "node:fs/promises";
import { availableParallelism, totalmem } from "node:os";
import { join } from "node:path";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import test from "ava";
import type { NodeMetrics } from "../gen/cube/v1/metrics_pb.js";
import {
  cpuPercentBetween,
  defaultCapacity,
  diskOf,
  NodeMetricsSampler,
} from "../worker/node-metrics.js";
import { tempDir } from "./fixtures.js";

test("latest() answers at once, before the first probe is done", async (t) => {
  const dataDir = await tempDir(t);
  const began = performance.now();
  const sampler = new NodeMetricsSampler({ dataDir, workerId: "w1" });
  t.teardown(() => sampler.close());
  const first = sampler.latest();
  t.true(performance.now() - began < 50, "constructing and reading must not wait on a probe");
  t.is(first.workerId, "w1");
  t.is(first.cpuCount, availableParallelism());
  t.is(first.memoryTotalBytes, BigInt(totalmem()));
  t.true(first.memoryAvailableBytes > 0n);
});

test("a full sample has CPU, memory, load and the data dir's disk", async (t) => {
  const dataDir = await tempDir(t);
  const sampler = new NodeMetricsSampler({ dataDir, workerId: "w2" });
  t.teardown(() => sampler.close());
  await sampler.ready();
  const m = sampler.latest();
  const fs = await statfs(dataDir, { bigint: true });
  t.is(m.diskTotalBytes, fs.blocks * fs.bsize);
  t.true(m.diskFreeBytes > 0n && m.diskFreeBytes <= m.diskTotalBytes);
  t.true(m.cpuPercent >= 0 && m.cpuPercent <= 100, `cpu ${m.cpuPercent}`);
  t.is(m.memoryUsedBytes + m.memoryAvailableBytes, m.memoryTotalBytes);
  t.true(m.load1 >= 0 && m.load5 >= 0 && m.load15 >= 0);
  if (!m.time) return t.fail("no time");
  t.true(Math.abs(timestampMs(m.time) - Date.now()) < 5000);
  sampler.workerId = "renamed";
  t.is(sampler.latest().workerId, "renamed");
  // Reading is synchronous and cheap whatever the sampler is doing.
  const began = performance.now();
  for (let i = 0; i < 1000; i++) sampler.latest();
  t.true(performance.now() - began < 50);
});

test("onSample is called on every interval until close", async (t) => {
  const dataDir = await tempDir(t);
  const sampler = new NodeMetricsSampler({ dataDir, intervalMs: 100 });
  t.teardown(() => sampler.close());
  const samples: NodeMetrics[] = [];
  sampler.onSample((m) => samples.push(m));
  const deadline = Date.now() + 5000;
  while (samples.length < 3 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.true(samples.length >= 3, `${samples.length} samples`);
  sampler.close();
  const count = samples.length;
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.is(samples.length, count);
});

test("the disk is that of the nearest existing directory; capacity defaults to the node", async (t) => {
  const dataDir = await tempDir(t);
  const disk = await diskOf(join(dataDir, "not", "yet", "made"));
  const fs = await statfs(dataDir, { bigint: true });
  t.is(disk.totalBytes, fs.blocks * fs.bsize);
  const capacity = await defaultCapacity(dataDir);
  t.is(capacity.cpu, availableParallelism());
  t.is(capacity.memoryBytes, BigInt(totalmem()));
  t.true(capacity.diskBytes > 0n && capacity.diskBytes <= disk.totalBytes);
});

test("cpuPercentBetween: busy share of all cores between two readings, clamped", (t) => {
  t.is(cpuPercentBetween({ busy: 100, total: 1000 }, { busy: 600, total: 2000 }), 50);
  t.is(cpuPercentBetween({ busy: 0, total: 0 }, { busy: 0, total: 0 }), 0, "no time passed");
  t.is(cpuPercentBetween({ busy: 0, total: 0 }, { busy: 10, total: 5 }), 100);
});

test("a sample sees the CPU this process burnt since the last one", async (t) => {
  const dataDir = await tempDir(t);
  const sampler = new NodeMetricsSampler({ dataDir, intervalMs: 200 });
  t.teardown(() => sampler.close());
  await sampler.ready();
  const next = new Promise<NodeMetrics>((resolve) => {
    const off = sampler.onSample((m) => {
      off();
      resolve(m);
    });
  });
  // One core fully busy for 600 ms (timers cannot fire meanwhile): the next sample spans it.
  const until = performance.now() + 600;
  while (performance.now() < until) {}
  const m = await next;
  const oneCore = 100 / availableParallelism();
  t.true(
    m.cpuPercent >= oneCore * 0.6,
    `cpu ${m.cpuPercent}% with one of ${availableParallelism()} cores busy`,
  );
});
