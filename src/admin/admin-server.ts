// The admin HTTP server: liveness, readiness, Prometheus metrics and JSON debug
// pages. It knows nothing of the parts it reports on: they hand it functions.
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";

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
  /** Served at /debug/<name>. */
  debugPages?: Record<string, DebugPage>;
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
  const pages = options.debugPages ?? {};

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
        sendJson(res, 200, { pages: Object.keys(pages).map((p) => `/debug/${p}`) });
        return;
    }
    if (url.pathname.startsWith("/debug/")) {
      const page = pages[url.pathname.slice("/debug/".length)];
      if (page) {
        try {
          sendJson(res, 200, await page(url.searchParams));
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

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, jsonReplacer, 2)}\n`;
  res.writeHead(status, { "content-type": "application/json" }).end(text);
}

// Debug snapshots may hold bigints (protobuf int64) and Dates.
function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  return value;
}
