/**
 * The web dashboard, for real: Debian's Chromium (headless, driven by playwright-core)
 * against a real manager process and a real worker on Docker. The page is built from web/
 * first (scripts/build-web.ts), then it must: take the token out of the address, list a
 * RUNNING task, show a task the CLI submits within 1 s without a reload, show a pending
 * task's reason, follow a task's logs, stop it, resume after the manager restarts, scale a
 * job (not with an empty field; 0 only when confirmed), cordon a node (and show one cordoned
 * from the CLI), and show a read token's refusal as the manager words it. A screenshot of the overview is written to .test-output/ (and to
 * docs/dashboard.png for the README with CUBE_UPDATE_DOCS=1) and checked to be no blank.
 * Chromium or Docker missing: the test fails, naming the set-up command; it never skips.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import test from "ava";
import type { Page } from "playwright-core";
import { banner, dashboardUrl } from "../cli/commands/dev.js";
import { JobService } from "../gen/cube/v1/job_service_pb.js";
import { TaskSpecSchema } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { Role, TokenService } from "../gen/cube/v1/token_service_pb.js";
import { buildWeb } from "../scripts/build-web.js";
import { launchChromium } from "./chromium.js";
import { CUBE_BIN, cube, cubeEnv, REPO_ROOT } from "./cli-harness.js";
import { HTTP_IMAGE, requireDocker, tempDir } from "./fixtures.js";
import { Cluster } from "./manager-process.js";
import { pngColours } from "./png-colours.js";

/** Where the screenshot goes (gitignored), for people to look at after a run. */
const OUTPUT = join(REPO_ROOT, ".test-output");

function clients(address: string, token: string) {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const transport = createGrpcTransport({ baseUrl: `http://${address}`, interceptors: [auth] });
  return {
    tasks: createClient(TaskService, transport),
    tokens: createClient(TokenService, transport),
    jobs: createClient(JobService, transport),
  };
}

/**
 * The little of the DOM that the functions run in the page touch (the root tsconfig has no
 * DOM lib; the casts are types only, so the functions still run as written in the page).
 */
interface PageGlobals {
  document: { querySelector(selector: string): { textContent: string | null } | null };
  location: { hash: string };
  notReloaded?: boolean;
}

/**
 * page.goto, again when Chromium gave up because the host's network changed: Docker adds and
 * removes a veth interface with every container, and Chromium aborts the requests in flight
 * then (net::ERR_NETWORK_CHANGED). The page's own calls retry by themselves; a navigation
 * does not.
 */
async function goto(page: Page, url: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await page.goto(url);
      return;
    } catch (error) {
      if (attempt >= 5 || !/ERR_NETWORK_CHANGED/.test((error as Error).message)) throw error;
    }
  }
}

/** The state badge of task `id` in the tasks table. */
const rowState = (id: string) => `tr[data-task="${id}"] [data-testid="state"]`;

async function waitForText(page: Page, selector: string, text: string | RegExp, timeout = 20_000) {
  await page.waitForFunction(
    ([sel, src, flags]) => {
      const el = (globalThis as unknown as PageGlobals).document.querySelector(sel as string);
      return !!el && new RegExp(src as string, flags as string).test(el.textContent ?? "");
    },
    [
      selector,
      typeof text === "string" ? text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") : text.source,
      typeof text === "string" ? "" : text.flags,
    ],
    { timeout, polling: 50 },
  );
}

test("cube dev prints the dashboard's address, the token in its fragment", (t) => {
  const url = dashboardUrl("127.0.0.1:5555", "s3cr/t+", false);
  t.is(url, "http://127.0.0.1:5555/#token=s3cr%2Ft%2B");
  t.is(dashboardUrl("127.0.0.1:5555", "x", true), "https://127.0.0.1:5555/#token=x");
  const text = banner(
    "127.0.0.1:5555",
    { id: "w1", address: "127.0.0.1:1" },
    "d",
    "cube",
    undefined,
    undefined,
    { url },
  );
  t.regex(text, /^cube dev: dashboard http:\/\/127\.0\.0\.1:5555\/#token=s3cr%2Ft%2B$/m);
});

/** One build for the file's tests (two at once would swap the same folder). */
let built: ReturnType<typeof buildWeb> | undefined;
const buildOnce = () => {
  built ??= buildWeb();
  return built;
};

test("the dashboard's files: content types, caching, no way out of web/dist", async (t) => {
  await buildOnce();
  const { startTestManager } = await import("./fixtures.js");
  const m = await startTestManager(t);
  const base = `http://${m.address}`;
  const index = await fetch(`${base}/`);
  t.is(index.status, 200);
  t.is(index.headers.get("content-type"), "text/html; charset=utf-8");
  t.is(index.headers.get("cache-control"), "no-cache");
  t.regex(index.headers.get("content-security-policy") ?? "", /connect-src 'self'/);
  const html = await index.text();
  const script = /src="(\/assets\/main-[A-Z0-9]+\.js)"/.exec(html)?.[1];
  const style = /href="(\/assets\/main-[A-Z0-9]+\.css)"/.exec(html)?.[1];
  t.truthy(script, html);
  t.truthy(style, html);
  const js = await fetch(`${base}${script}`);
  t.is(js.status, 200);
  t.is(js.headers.get("content-type"), "text/javascript; charset=utf-8");
  t.is(js.headers.get("cache-control"), "public, max-age=31536000, immutable");
  t.is((await fetch(`${base}${style}`)).headers.get("content-type"), "text/css; charset=utf-8");
  // Gzipped when asked for (fetch asks, and unpacks it), as it is when not.
  t.is(js.headers.get("content-encoding"), "gzip");
  t.is(js.headers.get("vary"), "accept-encoding");
  const plain = await rawGet(m.address, script as string);
  t.false(/content-encoding/i.test(plain.head));
  t.is(plain.body.length, (await js.arrayBuffer()).byteLength);
  const head = await fetch(`${base}${script}`, { method: "HEAD" });
  t.is(head.status, 200);
  t.is(await head.text(), "");
  t.is((await fetch(`${base}/`, { method: "POST" })).status, 405);
  // fetch normalises "..", so the raw paths go over a socket of their own.
  // web/dist/assets/../../../package.json is the repository's own package.json: a server
  // that followed any of these would answer 200 with it.
  for (const path of [
    "/assets/../../../package.json",
    "/assets/..%2f..%2f..%2fpackage.json",
    "/assets/%2e%2e/%2e%2e/%2e%2e/package.json",
    "/../../package.json",
    "/assets/.hidden",
    "/assets/",
    "/index.html/../../../package.json",
    "/web/dist/index.html",
  ]) {
    t.is(await rawStatus(m.address, path), 404, path);
  }
  // The RPCs beside it still need their token, over HTTP/1.1 too.
  const rpc = await fetch(`${base}/cube.v1.TaskService/ListTasks`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  t.is(rpc.status, 401);
});

test.serial("over TLS (cube dev --tls) the page talks HTTP/2 to the manager", async (t) => {
  t.timeout(60_000);
  await buildOnce();
  const { startTestManager } = await import("./fixtures.js");
  const m = await startTestManager(t, { tls: true });
  const browser = await launchChromium();
  t.teardown(() => browser.close());
  // The browser would have to trust the cluster's CA first; the test takes its word for it.
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await goto(page, dashboardUrl(m.address, m.adminToken as string, true));
  await waitForText(page, '[data-testid="link"]', "live");
  const protocols = await page.evaluate(() =>
    (
      globalThis as unknown as {
        performance: { getEntriesByType(type: string): { nextHopProtocol: string }[] };
      }
    ).performance
      .getEntriesByType("resource")
      .map((e) => e.nextHopProtocol),
  );
  // A fetch aborted before its answer (a watch the page opened again under load) reports
  // no protocol: those that answered tell.
  const reported = protocols.filter((p) => p !== "");
  t.true(reported.length >= 3, protocols.join());
  // One connection for every stream: the six-per-host limit of HTTP/1.1 is gone.
  t.true(
    reported.every((p) => p === "h2"),
    protocols.join(),
  );
});

test.serial(
  "a #token= address opened in a tab already showing sign-in signs in, and leaves the address",
  async (t) => {
    t.timeout(60_000);
    await buildOnce();
    const { startTestManager } = await import("./fixtures.js");
    const m = await startTestManager(t);
    const browser = await launchChromium();
    t.teardown(() => browser.close());
    const page = await browser.newPage();
    await goto(page, `http://${m.address}/`);
    await waitForText(page, ".sign-in button", "Sign in");
    // Only the fragment changes: the page does not load again.
    const token = m.adminToken as string;
    await page.evaluate((tk) => {
      (globalThis as unknown as PageGlobals).location.hash = `#token=${encodeURIComponent(tk)}`;
    }, token);
    await waitForText(page, '[data-testid="link"]', "live");
    t.false(page.url().includes(token), page.url());
    t.is(await page.evaluate(() => sessionStorage.getItem("cube.token")), token);
  },
);

test.serial(
  "a task garbage collected by the manager leaves the dashboard's table (its DELETED event)",
  async (t) => {
    t.timeout(60_000);
    await buildOnce();
    const { startTestManager } = await import("./fixtures.js");
    const { FakeClock } = await import("./fake-clock.js");
    const { TASK_GC_INTERVAL_MS } = await import("../manager/rules/task-gc.js");
    const clock = new FakeClock();
    const hour = 3600_000;
    const m = await startTestManager(t, { clock, taskGcAfterMs: hour });
    const api = clients(m.address, m.adminToken as string);
    // No worker: PENDING, and stopped at once (COMPLETED "stopped", ended now).
    await api.tasks.runTask({ id: "gone-soon", spec: { image: "x", name: "gone-soon" } });
    await api.tasks.runTask({ id: "stays", spec: { image: "x", name: "stays" } });
    await api.tasks.stopTask({ id: "gone-soon" });
    const browser = await launchChromium();
    t.teardown(() => browser.close());
    const page = await browser.newPage();
    await goto(page, dashboardUrl(m.address, m.adminToken as string, false));
    await waitForText(page, '[data-testid="link"]', "live");
    await goto(page, `http://${m.address}/#/tasks`);
    await waitForText(page, rowState("gone-soon"), "COMPLETED");
    clock.advance(hour + TASK_GC_INTERVAL_MS);
    await page.waitForSelector('tr[data-task="gone-soon"]', { state: "detached", timeout: 20_000 });
    t.is(await page.locator('tr[data-task="stays"]').count(), 1, "the other task stays");
  },
);

/** A GET of `path` with no Accept-Encoding: its head and its body. */
async function rawGet(address: string, path: string): Promise<{ head: string; body: Buffer }> {
  const { request } = await import("node:http");
  return new Promise((resolve, reject) => {
    const req = request(`http://${address}${path}`, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ head: JSON.stringify(res.headers), body: Buffer.concat(chunks) }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

/** The status line of a GET of `path` exactly as written (no client-side normalisation). */
async function rawStatus(address: string, path: string): Promise<number> {
  const { connect } = await import("node:net");
  const [host, port] = [
    address.slice(0, address.lastIndexOf(":")),
    Number(address.slice(address.lastIndexOf(":") + 1)),
  ];
  return new Promise((resolve, reject) => {
    const socket = connect(port, host, () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${address}\r\nConnection: close\r\n\r\n`);
    });
    let data = "";
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => {
      data += d;
    });
    socket.on("end", () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(data)?.[1] ?? 0)));
    socket.on("error", reject);
  });
}

test.serial(
  "the dashboard in Chromium: live tasks, pending reason, logs, stop, a drop, jobs, nodes, a read token",
  async (t) => {
    t.timeout(90_000);
    const started = Date.now();
    await requireDocker();
    const [made, browser] = await Promise.all([buildOnce(), launchChromium()]);
    t.teardown(() => browser.close());
    t.log(`web built in ${made.ms} ms (${(made.bytes / 1024).toFixed(0)} KiB)`);
    const cluster = new Cluster(t, await tempDir(t));
    const manager = await cluster.startManager();
    await cluster.startWorker("dash-node");
    const address = manager.address;
    const admin = manager.token as string;
    let api = clients(address, admin);

    // A task running before the page opens.
    const web = (
      await api.tasks.runTask({
        spec: create(TaskSpecSchema, {
          name: "web",
          image: HTTP_IMAGE,
          labels: { app: "web" },
          // Requests, so that the node's allocation bars show something in the screenshot.
          resources: { cpu: 0.5, memoryBytes: 256n << 20n },
        }),
      })
    ).task;
    t.truthy(web);

    const page = await browser.newPage({ viewport: { width: 1400, height: 860 } });
    const problems: string[] = [];
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console: ${m.text()}`);
    });
    try {
      // The address `cube dev` prints.
      await goto(page, dashboardUrl(address, admin, false));
      // The token left the address bar (and the history) for the tab's sessionStorage.
      await page.waitForFunction(
        () => !(globalThis as unknown as PageGlobals).location.hash.includes("token"),
      );
      t.false(page.url().includes(admin));
      t.is(await page.evaluate(() => sessionStorage.getItem("cube.token")), admin);
      await waitForText(page, '[data-testid="link"]', "live");

      // Lists a RUNNING task.
      await goto(page, `http://${address}/#/tasks`);
      await waitForText(page, rowState(web?.id as string), "RUNNING", 30_000);

      // A task submitted by the CLI shows within 1 s of the CLI's answer, without a reload.
      await page.evaluate(() => {
        (globalThis as unknown as PageGlobals).notReloaded = true;
      });
      const ticker = await cube(
        [
          "run",
          HTTP_IMAGE,
          "--name",
          "ticker",
          "--",
          "sh",
          "-c",
          "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done",
        ],
        { env: cubeEnv({ CUBE_MANAGER: address, CUBE_TOKEN: admin }) },
      );
      const answeredAt = Date.now();
      t.is(ticker.code, 0, `${CUBE_BIN} run: ${ticker.stderr}`);
      const tickerId = ticker.stdout.trim();
      await page.waitForSelector(`tr[data-task="${tickerId}"]`, { timeout: 1000 });
      const shownMs = Date.now() - answeredAt;
      t.log(`the CLI's task showed ${shownMs} ms after its answer`);
      t.true(
        await page.evaluate(() => (globalThis as unknown as PageGlobals).notReloaded === true),
      );

      // Its detail: RUNNING, its logs followed as they are written.
      await page.click(`tr[data-task="${tickerId}"] a`);
      await waitForText(page, "h1", "RUNNING", 30_000);
      await waitForText(page, '[data-testid="logs"]', /tick-\d+/, 20_000);
      const lastTick = async () =>
        Math.max(
          ...[
            ...((await page.textContent('[data-testid="logs"]')) ?? "").matchAll(/tick-(\d+)/g),
          ].map((m) => Number(m[1])),
        );
      const untilTick = (n: number, timeout: number) =>
        page.waitForFunction(
          (least) => {
            const logs = (globalThis as unknown as PageGlobals).document.querySelector(
              '[data-testid="logs"]',
            );
            const text = logs?.textContent ?? "";
            return [...text.matchAll(/tick-(\d+)/g)].some((m) => Number(m[1]) >= least);
          },
          n,
          { timeout, polling: 100 },
        );
      const first = await lastTick();
      await untilTick(first + 5, 15_000);
      t.log(`logs followed from tick-${first} to tick-${await lastTick()}`);

      // A drop: the manager is killed and comes back on the same address. The page resumes its
      // watches from the last revision it saw, and the log from the last line it showed,
      // without a reload: every tick once, in order, none missed.
      const beforeDrop = problems.length;
      const shownBefore = await lastTick();
      await manager.kill9();
      await waitForText(page, '[data-testid="link"]', /connecting|reconnecting/);
      await waitForText(page, '[data-testid="logs-status"]', /interrupted/);
      // Past the page's first attempt to follow again: what it showed is still there.
      await page.waitForTimeout(1500);
      t.regex(
        (await page.textContent('[data-testid="logs"]')) ?? "",
        new RegExp(`tick-${shownBefore}\\b`),
        "the lines shown stay while the manager is away",
      );
      await cluster.startManager();
      api = clients(address, admin);
      await untilTick(shownBefore + 10, 20_000);
      const ticks = [
        ...((await page.textContent('[data-testid="logs"]')) ?? "").matchAll(/tick-(\d+)/g),
      ].map((m) => Number(m[1]));
      t.deepEqual(
        ticks,
        ticks.map((_, i) => (ticks[0] as number) + i),
        "the log shows every tick once, in order, across the drop",
      );
      t.log(`logs resumed after the drop: tick-${ticks[0]} to tick-${ticks.at(-1)}, none twice`);
      const afterDrop = (
        await api.tasks.runTask({
          spec: create(TaskSpecSchema, { name: "after-drop", image: HTTP_IMAGE }),
        })
      ).task;
      await page.evaluate(() => {
        (globalThis as unknown as PageGlobals).location.hash = "#/tasks";
      });
      await page.waitForSelector(`tr[data-task="${afterDrop?.id}"]`, { timeout: 20_000 });
      await waitForText(page, '[data-testid="link"]', "live");
      // The browser logs each refused or cut request of the drop: expected, not a fault.
      problems.splice(
        beforeDrop,
        problems.length - beforeDrop,
        ...problems.slice(beforeDrop).filter((p) => !/Failed to load resource: net::ERR_/.test(p)),
      );
      t.true(
        await page.evaluate(() => (globalThis as unknown as PageGlobals).notReloaded === true),
        "the page was reloaded",
      );
      await page.evaluate((task) => {
        (globalThis as unknown as PageGlobals).location.hash = `#/tasks/${task}`;
      }, tickerId);
      await waitForText(page, "h1", "RUNNING", 30_000);

      // Stopped from the page: it ends COMPLETED, "stopped", live.
      await page.click('[data-testid="stop"]');
      await page.click('[data-testid="confirm-stop"]');
      await waitForText(page, "h1", "COMPLETED", 30_000);
      await waitForText(page, '[data-testid="reason"]', "stopped");
      await page.waitForSelector('[data-testid="event"]');

      // A task no worker can take: the page says why it waits.
      const big = (
        await api.tasks.runTask({
          spec: create(TaskSpecSchema, {
            name: "too-big",
            image: HTTP_IMAGE,
            resources: { cpu: 512 },
          }),
        })
      ).task;
      await goto(page, `http://${address}/#/tasks/${big?.id}`);
      await waitForText(page, '[data-testid="why-pending"]', /0\/1 workers fit/);
      t.log(`why pending: ${await page.textContent('[data-testid="why-pending"]')}`);

      // A read token sees everything, and a stop is refused in the manager's words.
      const read = await api.tokens.createToken({ name: "dashboard-read", role: Role.READ });
      const reader = await browser.newPage();
      await goto(reader, `http://${address}/#token=${read.secret}`);
      await goto(reader, `http://${address}/#/tasks/${web?.id}`);
      await waitForText(reader, "h1", "RUNNING");
      await reader.click('[data-testid="stop"]');
      await reader.click('[data-testid="confirm-stop"]');
      await waitForText(reader, ".actions .error", /PermissionDenied: .*may not call/);
      await reader.close();

      // A job: listed with its replicas, scaled from the page.
      await api.jobs.applyJob({
        spec: { name: "webjob", template: { image: HTTP_IMAGE }, count: 1 },
      });
      await page.evaluate(() => {
        (globalThis as unknown as PageGlobals).location.hash = "#/jobs";
      });
      await waitForText(page, 'tr[data-job="webjob"] [data-testid="replicas"]', /^1\/1/, 30_000);
      await page.click('tr[data-job="webjob"] a');
      // Scale with the field left empty (the count is only its placeholder): nothing is sent,
      // the page says what is missing. It used to send count 0 and stop every replica.
      await waitForText(page, '[data-testid="job-replicas"]', /^1\/1/, 30_000);
      await page.click('form.actions button[type="submit"]');
      await waitForText(page, '[data-testid="job-error"]', "type the number of replicas wanted");
      // 0 stops every replica: it takes a second click, and Cancel sends nothing.
      await page.fill("#scale", "0");
      await page.click('form.actions button[type="submit"]');
      await page.waitForSelector('[data-testid="confirm-scale-zero"]');
      await page.click('form.actions button:has-text("Cancel")');
      await page.waitForTimeout(500);
      t.is((await api.jobs.getJob({ name: "webjob" })).job?.spec?.count, 1);
      t.regex((await page.textContent('[data-testid="job-replicas"]')) ?? "", /^1\/1/);
      await page.fill("#scale", "2");
      await page.click('form.actions button[type="submit"]');
      await waitForText(page, '[data-testid="job-replicas"]', /^2\/2/, 30_000);
      t.is((await api.jobs.getJob({ name: "webjob" })).job?.spec?.count, 2);
      // A version 2 with a secret, reverted from the page: the deployment warns that version
      // 1 runs without it, and shows no value.
      await api.jobs.applyJob({
        spec: {
          name: "webjob",
          template: { image: HTTP_IMAGE, secretEnv: { TOKEN: "dash-secret-value" } },
          count: 2,
        },
      });
      await page.click('button:has-text("Revert to v1")');
      await waitForText(
        page,
        '[data-testid="deployment-warning"]',
        "version 1 has no secret_env TOKEN: its replicas run without it",
      );
      t.false((await page.textContent("body"))?.includes("dash-secret-value"));
      await mkdir(OUTPUT, { recursive: true });
      await page.screenshot({ path: join(OUTPUT, "dashboard-job.png"), fullPage: true });

      // A node cordoned from the page, then uncordoned.
      await page.evaluate(() => {
        (globalThis as unknown as PageGlobals).location.hash = "#/nodes";
      });
      const node = 'tr[data-node="dash-node"]';
      await waitForText(page, `${node} [data-testid="scheduling"]`, "schedulable");
      // The worker's agent has run for seconds or minutes (not "–": it said when it started).
      await waitForText(page, `${node} [data-testid="agent-up"]`, /^\d+[sm]$/);
      await page.click(`${node} button:has-text("Cordon")`);
      await waitForText(page, `${node} [data-testid="scheduling"]`, "cordoned");
      await page.screenshot({ path: join(OUTPUT, "dashboard-nodes.png"), fullPage: true });
      await page.click(`${node} button:has-text("Uncordon")`);
      await waitForText(page, `${node} [data-testid="scheduling"]`, "schedulable");
      // Cordoned and uncordoned from the CLI: the page hears of it from WatchWorkers (the
      // manager sends the worker again, unchanged) and asks ListNodes again.
      const cli = { env: cubeEnv({ CUBE_MANAGER: address, CUBE_TOKEN: admin }) };
      const cordon = await cube(["node", "cordon", "dash-node"], cli);
      t.is(cordon.code, 0, cordon.stderr);
      await waitForText(page, `${node} [data-testid="scheduling"]`, "cordoned", 5000);
      const uncordon = await cube(["node", "uncordon", "dash-node"], cli);
      t.is(uncordon.code, 0, uncordon.stderr);
      await waitForText(page, `${node} [data-testid="scheduling"]`, "schedulable", 5000);

      // The overview with a few tasks in it, for the README.
      await goto(page, `http://${address}/#/`);
      await waitForText(page, '[data-testid="count-running"]', /^[1-9]/);
      await page.waitForSelector(".node .bar-used", { timeout: 10_000 });
      await page.waitForTimeout(1500);
      const png = await page.screenshot({ fullPage: true });
      await mkdir(OUTPUT, { recursive: true });
      await writeFile(join(OUTPUT, "dashboard.png"), png);
      if (process.env.CUBE_UPDATE_DOCS === "1") {
        await writeFile(join(REPO_ROOT, "docs/dashboard.png"), png);
      }
      const summary = pngColours(png);
      t.log(
        `screenshot ${summary.width}x${summary.height}, ${summary.colours} colours: ${join(OUTPUT, "dashboard.png")}`,
      );
      t.true(summary.colours > 50, `a blank page? only ${summary.colours} colours`);
      t.deepEqual(problems, [], problems.join("\n"));
    } catch (error) {
      // What the page showed when it went wrong, for the failure's message.
      await mkdir(OUTPUT, { recursive: true });
      await page.screenshot({ path: join(OUTPUT, "dashboard-failure.png"), fullPage: true });
      t.log(`page at ${page.url()}: ${(await page.textContent("body"))?.slice(0, 2000)}`);
      t.log(problems.join("\n"));
      t.log(cluster.logs().slice(-3000));
      throw error;
    }
    t.log(`took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  },
);
