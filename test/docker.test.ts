/**
 * The Docker test bed itself: the engine answers, and cube/httpd:local behaves as the
 * other tests rely on (/health, the CGI health check that /cgi-bin/sick breaks).
 */
import { randomUUID } from "node:crypto";
import test, { type ExecutionContext } from "ava";
import { fetchContainer, HTTP_IMAGE, removeContainers, requireDocker } from "./fixtures.js";

/** Starts cube/httpd:local with port 80 published on a Docker-chosen 127.0.0.1 port. */
async function startHttpd(t: ExecutionContext, env: string[] = []): Promise<string> {
  const docker = await requireDocker();
  const label = `cube.test=docker-${randomUUID()}`;
  t.teardown(() => removeContainers(label));
  const [key = "", value = ""] = label.split("=");
  const container = await docker.createContainer({
    Image: HTTP_IMAGE,
    Env: env,
    Labels: { [key]: value },
    ExposedPorts: { "80/tcp": {} },
    HostConfig: {
      PortBindings: { "80/tcp": [{ HostIp: "127.0.0.1", HostPort: "" }] },
      // busybox httpd as PID 1 ignores SIGTERM; an init makes the removal quick.
      Init: true,
    },
  });
  await container.start();
  const info = await container.inspect();
  const hostPort = info.NetworkSettings.Ports["80/tcp"]?.[0]?.HostPort;
  t.truthy(hostPort, "port 80 is published");
  const base = `http://127.0.0.1:${hostPort}`;
  await fetchContainer(`${base}/`);
  return base;
}

async function status(url: string): Promise<number> {
  return (await fetchContainer(url)).status;
}

test("the image is labelled with its input hash and runs busybox httpd on port 80", async (t) => {
  const docker = await requireDocker();
  const info = await docker.getImage(HTTP_IMAGE).inspect();
  t.regex(info.Config.Labels?.["cube.image-hash"] ?? "", /^[0-9a-f]{32}$/);
  t.deepEqual(info.Config.Cmd, ["httpd", "-f", "-v", "-p", "80", "-h", "/www"]);
  t.deepEqual(Object.keys(info.Config.ExposedPorts ?? {}), ["80/tcp"]);
});

test("GET /health and /cgi-bin/health answer 200; after /cgi-bin/sick 500; after /cgi-bin/well 200 again", async (t) => {
  const base = await startHttpd(t);
  t.is(await status(`${base}/health`), 200);
  t.is(await status(`${base}/cgi-bin/health`), 200);
  t.is(await status(`${base}/cgi-bin/sick`), 200);
  t.is(await status(`${base}/cgi-bin/health`), 500);
  t.is(await status(`${base}/health`), 200, "the static file stays healthy");
  t.is(await status(`${base}/cgi-bin/well`), 200);
  t.is(await status(`${base}/cgi-bin/health`), 200);
  t.is(await status(`${base}/no-such-page`), 404);
});

test("HEALTH_FAIL=1 makes /cgi-bin/health answer 500 from the start", async (t) => {
  const base = await startHttpd(t, ["HEALTH_FAIL=1"]);
  t.is(await status(`${base}/cgi-bin/health`), 500);
  t.is(await status(`${base}/cgi-bin/well`), 200);
  t.is(await status(`${base}/cgi-bin/health`), 500, "the environment wins over /cgi-bin/well");
});

test("teardown removes the labelled containers", async (t) => {
  const docker = await requireDocker();
  const label = `cube.test=docker-${randomUUID()}`;
  const [key = "", value = ""] = label.split("=");
  t.teardown(() => removeContainers(label));
  await docker.createContainer({ Image: HTTP_IMAGE, Labels: { [key]: value } });
  t.is(await removeContainers(label), 1);
  const left = await docker.listContainers({ all: true, filters: { label: [label] } });
  t.is(left.length, 0);
});
