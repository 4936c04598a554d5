// A node:http server on 127.0.0.1 that a test can take down (the port refuses connections),
// bring back on the same port, make answer 5xx, or make hang (a timeout).
import * as http from "node:http";
import type { AddressInfo } from "node:net";

export type FlakyMode = "ok" | "error-503" | "hang";

export interface FlakyHttpServer {
  readonly base: string;
  readonly port: number;
  mode: FlakyMode;
  /** Requests that reached the handler (any mode). */
  readonly requests: number;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startFlakyHttp(handler: http.RequestListener, port = 0): Promise<FlakyHttpServer> {
  let server: http.Server | undefined;
  let requests = 0;
  const hanging = new Set<http.ServerResponse>();
  const state: { mode: FlakyMode } = { mode: "ok" };
  const listen = async (p: number): Promise<number> => {
    const s = http.createServer((req, res) => {
      requests++;
      if (state.mode === "error-503") {
        req.resume();
        res.writeHead(503, { "content-type": "text/plain" }).end("overloaded");
      } else if (state.mode === "hang") {
        req.resume();
        hanging.add(res);
      } else handler(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(p, "127.0.0.1", () => resolve());
    });
    server = s;
    return (s.address() as AddressInfo).port;
  };
  const stop = async () => {
    const s = server;
    server = undefined;
    if (!s) return;
    for (const res of hanging) res.destroy();
    hanging.clear();
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  };
  const boundPort = await listen(port);
  return {
    base: `http://127.0.0.1:${boundPort}`,
    port: boundPort,
    get mode() {
      return state.mode;
    },
    set mode(m: FlakyMode) {
      state.mode = m;
    },
    get requests() {
      return requests;
    },
    down: stop,
    async up() {
      if (!server) await listen(boundPort);
    },
    close: stop,
  };
}

/** Serves a TokenReview for `system:serviceaccount:<ns>:<sa>` when the token is "<ns>/<sa>", else unauthenticated. */
export const tokenReviewHandler: http.RequestListener = (req, res) => {
  let body = "";
  req.on("data", (c: Buffer) => (body += c));
  req.on("end", () => {
    const token = String((JSON.parse(body) as { spec?: { token?: unknown } }).spec?.token ?? "");
    const m = /^([a-z0-9-]+)\/([a-z0-9-]+)$/.exec(token);
    const status = m
      ? { authenticated: true, user: { username: `system:serviceaccount:${m[1]}:${m[2]}` }, audiences: ["istio-ca"] }
      : { authenticated: false, error: "token not recognised" };
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", status }));
  });
};
