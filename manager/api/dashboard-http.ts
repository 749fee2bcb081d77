/**
 * The dashboard's static files (web/dist, built from web/ by scripts/build-web.ts) at `/`,
 * over HTTP/1.1 and h2c, through the server's plain-HTTP fallback. The files need no token:
 * they hold no data; every call the page makes is an RPC with the page's own token.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { PlainHandler } from "../../lib/rpc/plain-http.js";

/** Where the build is (the repository's web/dist). */
export const DASHBOARD_DIR = fileURLToPath(new URL("../../web/dist/", import.meta.url));

const TYPES: Readonly<Record<string, string>> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".woff2": "font/woff2",
};

/**
 * The page may load only its own files and call only its own origin: an injected script
 * could not send the token elsewhere. uPlot and Preact set styles through the DOM (allowed);
 * no inline script or style element is used.
 */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const COMMON = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/**
 * An asset's name: what esbuild writes (`main-NK7RZ3JL.js`). No slash, and no leading dot,
 * so nothing but a file directly under assets/ can ever be named — no `..`, no dot file, no
 * percent-encoded trick (a `%` does not match).
 */
const ASSET = /^\/assets\/([A-Za-z0-9][A-Za-z0-9._-]*)$/;

/** Whether `path` (no query) is one of the dashboard's: `/`, `/index.html` or `/assets/…`. */
export function isDashboardPath(path: string): boolean {
  return path === "/" || path === "/index.html" || path.startsWith("/assets/");
}

/**
 * Serves the dashboard from `dir`: index.html at `/` (never cached: it names the current
 * assets), content-hashed assets cached for a year. GET and HEAD only. Before the first
 * build, `/` says how to make one.
 */
export function dashboardHandler(dir = DASHBOARD_DIR): PlainHandler {
  return (req, res) => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q === -1 ? url : url.slice(0, q);
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
      res.end("use GET\n");
      return;
    }
    const asset = ASSET.exec(path)?.[1];
    const isIndex = path === "/" || path === "/index.html";
    if (!isIndex && !asset) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8", ...COMMON });
      res.end("not found\n");
      return;
    }
    const file = isIndex ? `${dir}index.html` : `${dir}assets/${asset}`;
    // The build gzips scripts and stylesheets beside them (scripts/build-web.ts).
    const gzip =
      !isIndex &&
      /\.(js|css)$/.test(asset as string) &&
      /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
    const read = gzip
      ? readFile(`${file}.gz`).then(
          (body) => ({ body, gzipped: true }),
          () => readFile(file).then((body) => ({ body, gzipped: false })),
        )
      : readFile(file).then((body) => ({ body, gzipped: false }));
    read.then(
      ({ body, gzipped }) => {
        const headers: Record<string, string | number> = isIndex
          ? {
              "content-type": "text/html; charset=utf-8",
              "cache-control": "no-cache",
              "content-security-policy": CSP,
              "x-frame-options": "DENY",
            }
          : {
              "content-type":
                TYPES[(asset as string).slice((asset as string).lastIndexOf("."))] ??
                "application/octet-stream",
              "cache-control": "public, max-age=31536000, immutable",
              vary: "accept-encoding",
              ...(gzipped ? { "content-encoding": "gzip" } : {}),
            };
        res.writeHead(200, { ...headers, ...COMMON, "content-length": body.length });
        if (req.method === "HEAD") res.end();
        else res.end(body);
      },
      (error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT" && isIndex) {
          res.writeHead(503, { "content-type": "text/plain; charset=utf-8", ...COMMON });
          res.end(
            "The dashboard is not built: run `npm run setup` (or `npm run build:web`) in cube's clone, then reload.\n",
          );
          return;
        }
        res.writeHead(error.code === "ENOENT" ? 404 : 500, {
          "content-type": "text/plain; charset=utf-8",
          ...COMMON,
        });
        res.end(error.code === "ENOENT" ? "not found\n" : "cannot read the file\n");
      },
    );
  };
}
