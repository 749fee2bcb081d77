/**
 * A registry on loopback (Docker trusts 127.0.0.0/8 over plain HTTP) that serves one
 * image's manifest and config, then sends the first bytes of its layer and goes silent:
 * the way a registry behind a dying link or an overloaded proxy hangs a pull.
 */
import { createHash } from "node:crypto";
import { once } from "node:events";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** A running stalling registry. */
export interface StallingRegistry {
  /** `127.0.0.1:<port>/cube-test/stall:<tag>`, unique per registry. */
  readonly image: string;
  /** Resolves once the engine asked for the layer and got its first bytes. */
  readonly layerStarted: Promise<void>;
  /** How many times the engine asked for the layer. */
  layerRequests(): number;
  close(): Promise<void>;
}

const sha256 = (data: Uint8Array | string) =>
  `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** Layer size announced; only {@link SENT} bytes of it ever go out. */
const LAYER_SIZE = 4 * 1024 * 1024;
const SENT = 256 * 1024;

export async function stallingRegistry(tag: string): Promise<StallingRegistry> {
  const layerDigest = sha256(`cube stalling layer ${tag}`);
  const config = JSON.stringify({
    architecture: "amd64",
    os: "linux",
    config: {},
    rootfs: { type: "layers", diff_ids: [sha256(`cube stalling diff ${tag}`)] },
  });
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.docker.distribution.manifest.v2+json",
    config: {
      mediaType: "application/vnd.docker.container.image.v1+json",
      size: Buffer.byteLength(config),
      digest: sha256(config),
    },
    layers: [
      {
        mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip",
        size: LAYER_SIZE,
        digest: layerDigest,
      },
    ],
  });
  const held = new Set<ServerResponse>();
  let started: () => void = () => {};
  const layerStarted = new Promise<void>((resolve) => {
    started = resolve;
  });
  let layerRequests = 0;

  const server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    res.setHeader("Docker-Distribution-API-Version", "registry/2.0");
    const send = (type: string, body: string) => {
      res.writeHead(200, {
        "Content-Type": type,
        "Content-Length": Buffer.byteLength(body),
        "Docker-Content-Digest": sha256(body),
      });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    if (path === "/v2/") return send("application/json", "{}");
    if (
      path === `/v2/cube-test/stall/manifests/${tag}` ||
      path === `/v2/cube-test/stall/manifests/${sha256(manifest)}`
    ) {
      return send("application/vnd.docker.distribution.manifest.v2+json", manifest);
    }
    if (path === `/v2/cube-test/stall/blobs/${sha256(config)}`) {
      return send("application/octet-stream", config);
    }
    if (path === `/v2/cube-test/stall/blobs/${layerDigest}`) {
      res.writeHead(200, {
        "Content-Type": "application/octet-stream",
        "Content-Length": LAYER_SIZE,
        "Docker-Content-Digest": layerDigest,
      });
      layerRequests++;
      held.add(res);
      res.on("close", () => held.delete(res));
      res.write(Buffer.alloc(SENT, 7), () => started());
      return;
    }
    res.writeHead(404, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ errors: [{ code: "NAME_UNKNOWN", message: `no ${path} here` }] }));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    image: `127.0.0.1:${port}/cube-test/stall:${tag}`,
    layerStarted,
    layerRequests: () => layerRequests,
    async close() {
      for (const res of held) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
