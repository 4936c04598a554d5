// The admin HTTP server: liveness, readiness, Prometheus metrics, JSON debug pages
// and the status page (`/`, `/status.json`). It knows nothing of the parts it reports
// on: they hand it functions.
import * as http from "node:http";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import type { StatusSnapshot } from "./status-model.js";
import { renderStatusMain, renderStatusPage } from "./status-page.js";

export interface ReadinessReport {
  ready: boolean;
  /** One entry per enabled component, e.g. { ca: true, sds: true, xds: false }. */
  checks: Record<string, boolean>;
}

/** A debug page: gets the query string, returns something JSON-able (or throws DebugPageError). */
export type DebugPage = (query: URLSearchParams) => unknown | Promise<unknown>;

/** A debug page's answer to a bad query (e.g. an unknown node id): becomes an HTTP 4xx. */
export class DebugPageError extends Error {
  override name = "DebugPageError";
  constructor(
    message: string,
    readonly status = 404,
  ) {
    super(message);
  }
}

export interface AdminServerOptions {
  listen: { host: string; port: number };
  registry: Registry;
  readiness: () => ReadinessReport;
  /** Served at /debug/<name> (looked up as a Map: /debug/constructor is a 404). Paginated with ?limit&offset. */
  debugPages?: Record<string, DebugPage> | ReadonlyMap<string, DebugPage>;
  /** The status page's data: `/` renders it, `/status.json` serves it (without it, `/` lists the endpoints). */
  status?: () => StatusSnapshot | Promise<StatusSnapshot>;
}

export interface RunningAdminServer {
  readonly address: string;
  readonly port: number;
  /** From now on /readyz answers 503 (used while draining on shutdown). */
  setDraining(): void;
  close(): Promise<void>;
}

export async function startAdminServer(options: AdminServerOptions): Promise<RunningAdminServer> {
  let draining = false;
  // Own entries only, read at each request (pages may be added after start): never the prototype's.
  const pages = (): ReadonlyMap<string, DebugPage> => {
    const p = options.debugPages ?? {};
    return p instanceof Map ? p : new Map(Object.entries(p as Record<string, DebugPage>));
  };

  const server = http.createServer((req, res) => {
    void handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: (err as Error).message });
      else res.destroy();
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://admin");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    switch (url.pathname) {
      case "/":
      case "/status.json": {
        if (!options.status) break;
        const snapshot = await options.status();
        if (url.pathname === "/status.json") sendJson(res, 200, snapshot, { escapeMarkup: true });
        else if (url.searchParams.get("fragment") === "main") sendHtml(res, renderStatusMain(snapshot));
        else sendHtml(res, renderStatusPage(snapshot));
        return;
      }
      case "/status.js":
      case "/status.css": {
        if (!options.status) break;
        const asset = STATUS_ASSETS[url.pathname]!;
        res.writeHead(200, { ...COMMON_HEADERS, "content-type": asset.type, "cache-control": "no-cache" }).end(asset.body());
        return;
      }
      case "/healthz":
        res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
        return;
      case "/readyz": {
        const report = options.readiness();
        const ready = report.ready && !draining;
        sendJson(res, ready ? 200 : 503, { ready, draining, checks: report.checks });
        return;
      }
      case "/metrics": {
        const body = await options.registry.metrics();
        res.writeHead(200, { "content-type": options.registry.contentType }).end(body);
        return;
      }
      case "/debug":
      case "/debug/":
        sendJson(res, 200, { pages: [...pages().keys()].map((p) => `/debug/${p}`) });
        return;
    }
    if (url.pathname.startsWith("/debug/")) {
      const page = pages().get(url.pathname.slice("/debug/".length));
      if (page) {
        try {
          const window = pageWindow(url.searchParams);
          const { body, total } = paginate(await page(url.searchParams), window);
          const headers: Record<string, string> = { "x-total-count": String(total) };
          if (window.offset + window.limit < total) {
            const next = new URLSearchParams(url.searchParams);
            next.set("offset", String(window.offset + window.limit));
            next.set("limit", String(window.limit));
            headers.link = `<${url.pathname}?${next.toString()}>; rel="next"`;
          }
          sendJson(res, 200, body, {}, headers);
        } catch (err) {
          if (err instanceof DebugPageError) sendJson(res, err.status, { error: err.message });
          else throw err;
        }
        return;
      }
    }
    sendJson(res, 404, { error: `no admin page at ${url.pathname}` });
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.listen.port, options.listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = options.listen.host.includes(":") ? `[${options.listen.host}]` : options.listen.host;
  return {
    address: `${host}:${port}`,
    port,
    setDraining() {
      draining = true;
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** On every response: no content sniffing (a JSON page holding a client's `<script>` stays JSON). */
const COMMON_HEADERS = { "x-content-type-options": "nosniff" };

/**
 * The status page runs only its own script and stylesheet (served here, never inline),
 * fetches only from this origin, and cannot be framed or post anywhere.
 */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

// Read once, on first use: the files sit next to this module.
const assetFile = (name: string) => {
  let body: Buffer | undefined;
  return () => (body ??= readFileSync(new URL(`./assets/${name}`, import.meta.url)));
};
const STATUS_ASSETS: Record<string, { type: string; body: () => Buffer }> = {
  "/status.js": { type: "text/javascript; charset=utf-8", body: assetFile("status-page.js") },
  "/status.css": { type: "text/css; charset=utf-8", body: assetFile("status-page.css") },
};

function sendHtml(res: http.ServerResponse, html: string): void {
  res
    .writeHead(200, {
      ...COMMON_HEADERS,
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": STATUS_PAGE_CSP,
      "referrer-policy": "no-referrer",
      "x-frame-options": "DENY",
      "cache-control": "no-store",
    })
    .end(html);
}

/** Items a debug page returns per array when ?limit is not given, and the most ?limit may ask. */
export const DEBUG_PAGE_DEFAULT_LIMIT = 500;
export const DEBUG_PAGE_MAX_LIMIT = 5_000;

interface PageWindow {
  offset: number;
  limit: number;
}

function pageWindow(query: URLSearchParams): PageWindow {
  const num = (key: string, fallback: number): number => {
    const raw = query.get(key);
    if (raw === null) return fallback;
    if (!/^\d{1,9}$/.test(raw)) throw new DebugPageError(`?${key} must be a non-negative integer`, 400);
    return Number(raw);
  };
  return { offset: num("offset", 0), limit: Math.min(Math.max(num("limit", DEBUG_PAGE_DEFAULT_LIMIT), 1), DEBUG_PAGE_MAX_LIMIT) };
}

/**
 * Bounds a debug page's answer: an array, or every top-level array of an object, is cut
 * to the window. The shape stays; an object that was cut says so in `page` (with each
 * array's total), and the X-Total-Count header holds the largest total.
 */
function paginate(body: unknown, w: PageWindow): { body: unknown; total: number } {
  const cut = (a: unknown[]) => a.slice(w.offset, w.offset + w.limit);
  if (Array.isArray(body)) return { body: cut(body), total: body.length };
  if (body === null || typeof body !== "object" || Object.getPrototypeOf(body) !== Object.prototype) return { body, total: 1 };
  const totals: Record<string, number> = {};
  let cutSomething = false;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) {
    if (Array.isArray(v)) {
      totals[k] = v.length;
      const part = cut(v);
      if (part.length !== v.length) cutSomething = true;
      out[k] = part;
    } else out[k] = v;
  }
  const total = Math.max(1, ...Object.values(totals));
  if (cutSomething) out.page = { offset: w.offset, limit: w.limit, totals };
  return { body: out, total };
}

function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  opts: { escapeMarkup?: boolean } = {},
  headers: Record<string, string> = {},
): void {
  let text = `${JSON.stringify(body, jsonReplacer, 2)}\n`;
  // "<" as \u003c: the same JSON, and no markup in it even if something renders it as HTML.
  if (opts.escapeMarkup) text = text.replace(/</g, "\\u003c");
  res.writeHead(status, { ...COMMON_HEADERS, ...headers, "content-type": "application/json" }).end(text);
}

// Debug snapshots may hold bigints (protobuf int64) and Dates.
function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  return value;
}
