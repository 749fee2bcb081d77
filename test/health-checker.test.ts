/**
 * Health checks against a real container (busybox httpd with a CGI health endpoint that
 * can be made to fail) and against plain Node servers for the failure modes.
 */
import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import test from "ava";
import {
  HealthCheckSchema,
  HealthStatus,
  PortBindingSchema,
  Protocol,
  TaskSpecSchema,
} from "../gen/cube/v1/task_pb.js";
import { createDockerDriver } from "../worker/docker/driver.js";
import {
  HealthChecker,
  type HealthReport,
  healthCheckTarget,
  resolveHealthCheck,
} from "../worker/tasks/health-checker.js";
import { fetchContainer, HTTP_IMAGE, removeContainers, requireDocker } from "./fixtures.js";

const fast = (path: string, threshold = 3, timeoutMs = 1000) =>
  create(HealthCheckSchema, {
    path,
    interval: durationFromMs(100),
    timeout: durationFromMs(timeoutMs),
    failureThreshold: threshold,
  });

/** Collects reports and lets a test wait for the n-th one. */
function recorder() {
  const reports: HealthReport[] = [];
  const waiting: { n: number; resolve: () => void }[] = [];
  return {
    reports,
    onChange(report: HealthReport) {
      reports.push(report);
      for (const w of waiting.filter((w) => reports.length >= w.n)) w.resolve();
    },
    async until(n: number, ms = 8000): Promise<HealthReport | undefined> {
      if (reports.length < n) {
        await Promise.race([
          new Promise<void>((resolve) => waiting.push({ n, resolve })),
          new Promise((resolve) => setTimeout(resolve, ms)),
        ]);
      }
      return reports[n - 1];
    },
  };
}

async function listen(t: { teardown(fn: () => unknown): void }, server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(
    () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  );
  return (server.address() as AddressInfo).port;
}

test("the proto's defaults apply: interval 1s, timeout 1s, threshold 3", (t) => {
  t.deepEqual(resolveHealthCheck(create(HealthCheckSchema, { path: "/health" })), {
    path: "/health",
    intervalMs: 1000,
    timeoutMs: 1000,
    failureThreshold: 3,
    startPeriodMs: 0,
  });
  t.is(resolveHealthCheck(create(HealthCheckSchema, {})).path, "/");
});

test("the checked address is where health_check.port is published, else the first spec port", (t) => {
  const bindings = [
    create(PortBindingSchema, { containerPort: 80, hostPort: 32001, protocol: Protocol.TCP }),
    create(PortBindingSchema, {
      containerPort: 9090,
      hostPort: 32002,
      protocol: Protocol.TCP,
      hostIp: "10.1.2.3",
    }),
    create(PortBindingSchema, { containerPort: 7070, hostPort: 32003, hostIp: "0.0.0.0" }),
    create(PortBindingSchema, { containerPort: 6060, hostPort: 32004, hostIp: "::" }),
  ];
  const ports = [{ containerPort: 80 }, { containerPort: 9090 }];
  const target = (healthCheck: { path?: string; port?: number }, withPorts = true) =>
    healthCheckTarget(
      create(TaskSpecSchema, { ports: withPorts ? ports : [], healthCheck }),
      bindings,
    );
  t.deepEqual(target({ path: "/" }), { host: "127.0.0.1", port: 32001 });
  // Published on one address only: checked there, not on loopback where nothing listens.
  t.deepEqual(target({ path: "/", port: 9090 }), { host: "10.1.2.3", port: 32002 });
  t.deepEqual(target({ port: 7070 }), { host: "127.0.0.1", port: 32003 });
  t.deepEqual(target({ port: 6060 }), { host: "::1", port: 32004 });
  t.is(target({ path: "/" }, false), undefined);
  t.is(target({ port: 7 }), undefined);
});

test("a real container: /health is HEALTHY; the CGI check turns UNHEALTHY after the threshold and back", async (t) => {
  await requireDocker();
  const workerId = `test-health-${randomUUID()}`;
  const driver = createDockerDriver();
  const checker = new HealthChecker();
  t.teardown(async () => {
    checker.close();
    await driver.close();
    await removeContainers(`cube.worker=${workerId}`);
  });
  const spec = create(TaskSpecSchema, { image: HTTP_IMAGE, ports: [{ containerPort: 80 }] });
  const info = await driver.start({ taskId: "web", generation: 1n, workerId, spec });
  const target = healthCheckTarget(spec, info.ports);
  if (target === undefined) return t.fail("no published port");
  const { port } = target;

  const plain = recorder();
  checker.watch("plain", 1n, fast("/health"), target, plain.onChange);
  t.like(await plain.until(1), {
    status: HealthStatus.HEALTHY,
    message: "HTTP 200",
    consecutiveFailures: 0,
  });

  const cgi = recorder();
  checker.watch("web", 1n, fast("/cgi-bin/health"), target, cgi.onChange);
  t.like(await cgi.until(1), { status: HealthStatus.HEALTHY });
  t.is((await fetchContainer(`http://127.0.0.1:${port}/cgi-bin/sick`)).status, 200);
  t.like(await cgi.until(2), {
    status: HealthStatus.UNHEALTHY,
    message: "HTTP 500",
    consecutiveFailures: 3,
  });
  t.is((await fetchContainer(`http://127.0.0.1:${port}/cgi-bin/well`)).status, 200);
  t.like(await cgi.until(3), { status: HealthStatus.HEALTHY, consecutiveFailures: 0 });
  // /health never changed, so it reported once only.
  t.is(plain.reports.length, 1);
  t.is(checker.watching("web"), 1n);
});

test("a real container published on one address only (127.0.0.2) is checked there and is HEALTHY", async (t) => {
  await requireDocker();
  const workerId = `test-health-${randomUUID()}`;
  const driver = createDockerDriver();
  const checker = new HealthChecker();
  t.teardown(async () => {
    checker.close();
    await driver.close();
    await removeContainers(`cube.worker=${workerId}`);
  });
  const spec = create(TaskSpecSchema, {
    image: HTTP_IMAGE,
    ports: [{ containerPort: 80, hostIp: "127.0.0.2" }],
  });
  // Another task id than the test above: container names hold only the worker id's start.
  const info = await driver.start({ taskId: "web-one-ip", generation: 1n, workerId, spec });
  const target = healthCheckTarget(spec, info.ports);
  t.is(target?.host, "127.0.0.2");
  if (target === undefined) return;
  const rec = recorder();
  checker.watch("web", 1n, fast("/health"), target, rec.onChange);
  t.like(await rec.until(1), { status: HealthStatus.HEALTHY, message: "HTTP 200" });
});

test("HTTP 500 turns UNHEALTHY only after failure_threshold failures in a row", async (t) => {
  let hits = 0;
  const port = await listen(
    t,
    createServer((_req, res) => {
      hits += 1;
      res.statusCode = 500;
      res.end();
    }),
  );
  const checker = new HealthChecker();
  t.teardown(() => checker.close());
  const rec = recorder();
  checker.watch("t", 1n, fast("/", 4), { host: "127.0.0.1", port }, rec.onChange);
  const report = await rec.until(1);
  t.like(report, { status: HealthStatus.UNHEALTHY, message: "HTTP 500", consecutiveFailures: 4 });
  t.true(hits >= 4);
  // Further failures change nothing, so nothing more is reported.
  await new Promise((resolve) => setTimeout(resolve, 400));
  t.is(rec.reports.length, 1);
  checker.unwatch("t");
  const after = hits;
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.true(hits <= after + 1, "checks went on after unwatch");
  t.is(checker.watching("t"), undefined);
});

/** A server that answers 500 until `sick` is set false, counting its hits. */
async function flakyServer(t: { teardown(fn: () => unknown): void }) {
  const state = { sick: true, hits: 0 };
  const port = await listen(
    t,
    createServer((_req, res) => {
      state.hits += 1;
      res.statusCode = state.sick ? 500 : 200;
      res.end();
    }),
  );
  return { state, target: { host: "127.0.0.1", port } };
}

test("start_period: failures while the service boots count for nothing; the first pass ends it", async (t) => {
  const { state, target } = await flakyServer(t);
  const checker = new HealthChecker();
  t.teardown(() => checker.close());
  const check = create(HealthCheckSchema, {
    ...fast("/", 2),
    startPeriod: durationFromMs(5000),
  });
  const rec = recorder();
  checker.watch("t", 1n, check, target, rec.onChange, Date.now());
  // Far more failures than the threshold, all within the start period: no verdict.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  t.true(state.hits >= 3, `only ${state.hits} checks`);
  t.deepEqual(rec.reports, []);
  state.sick = false;
  t.like(await rec.until(1), { status: HealthStatus.HEALTHY });
  // Passed once: from now on failures count, start period or not.
  state.sick = true;
  t.like(await rec.until(2), { status: HealthStatus.UNHEALTHY, consecutiveFailures: 2 });
});

test("start_period counts from the container's start: past it, failures count at once", async (t) => {
  const { target } = await flakyServer(t);
  const checker = new HealthChecker();
  t.teardown(() => checker.close());
  const check = create(HealthCheckSchema, { ...fast("/", 2), startPeriod: durationFromMs(5000) });
  const rec = recorder();
  // A container started 10 s ago (a worker that re-adopted it): its start period is over.
  checker.watch("t", 1n, check, target, rec.onChange, Date.now() - 10_000);
  t.like(await rec.until(1, 3000), { status: HealthStatus.UNHEALTHY, consecutiveFailures: 2 });
});

test("a server that does not answer in time is a timeout", async (t) => {
  const port = await listen(
    t,
    createServer(() => {
      // never answers
    }),
  );
  const checker = new HealthChecker();
  t.teardown(() => checker.close());
  const rec = recorder();
  checker.watch("t", 1n, fast("/", 2, 150), { host: "127.0.0.1", port }, rec.onChange);
  t.like(await rec.until(1), {
    status: HealthStatus.UNHEALTHY,
    message: "timeout after 150ms",
    consecutiveFailures: 2,
  });
});

test("a closed port is a connection refused", async (t) => {
  const server = createServer();
  const port = await listen(t, server);
  await new Promise((resolve) => server.close(resolve));
  const checker = new HealthChecker();
  t.teardown(() => checker.close());
  const rec = recorder();
  checker.watch("t", 1n, fast("/", 2), { host: "127.0.0.1", port }, rec.onChange);
  t.like(await rec.until(1), {
    status: HealthStatus.UNHEALTHY,
    message: "connection refused",
    consecutiveFailures: 2,
  });
});
