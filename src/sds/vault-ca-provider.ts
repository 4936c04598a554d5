// CaProvider for HashiCorp Vault's PKI engine, authenticated with the workload's
// own Kubernetes service-account token:
//   PUT /v1/<authPath>   {jwt, role}                       → auth.client_token
//   PUT /v1/<signPath>   X-Vault-Token, {csr, ttl, format}  → data.certificate + data.ca_chain
// 5xx, 429 and connection failures are transient; other 4xx are not.
import * as http from "node:http";
import * as https from "node:https";
import { CaProviderError, type CaProvider } from "./ca-provider.js";

export interface VaultCaProviderOptions {
  /** http(s)://host:port of Vault. */
  address: string;
  /** Kubernetes auth login path, e.g. auth/kubernetes/login. */
  authPath: string;
  /** Vault role bound to the service accounts. */
  role: string;
  /** PKI sign path, e.g. pki/sign/istio. */
  signPath: string;
  /** PEM trust anchor(s) for an https address. */
  caPem?: string;
  /** Deadline of one HTTP request (default 10 s). */
  timeoutMs?: number;
}

const MAX_RESPONSE_BYTES = 1024 * 1024;

export function createVaultCaProvider(options: VaultCaProviderOptions): CaProvider {
  let base: URL;
  try {
    base = new URL(options.address);
  } catch {
    throw new TypeError(`vault address must be an http(s) URL, got "${options.address}"`);
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") {
    throw new TypeError(`vault address must be an http(s) URL, got "${options.address}"`);
  }
  const timeoutMs = options.timeoutMs ?? 10_000;
  const trimPath = (p: string) => p.replace(/^\/+|\/+$/g, "").replace(/^v1\//, "");
  const loginUrl = new URL(`/v1/${trimPath(options.authPath)}`, base);
  const signUrl = new URL(`/v1/${trimPath(options.signPath)}`, base);

  async function put(url: URL, body: unknown, headers: Record<string, string>, what: string): Promise<Record<string, unknown>> {
    let res: { status: number; text: string };
    try {
      res = await request(url, JSON.stringify(body), headers, options.caPem, timeoutMs);
    } catch (err) {
      throw new CaProviderError(`vault ${what} at ${url.origin} failed: ${(err as Error).message}`, "unavailable", { cause: err });
    }
    let json: Record<string, unknown> = {};
    try {
      json = res.text ? (JSON.parse(res.text) as Record<string, unknown>) : {};
    } catch {
      /* not JSON: reported below with the status */
    }
    if (res.status >= 200 && res.status < 300) return json;
    const errors = Array.isArray(json.errors) ? json.errors.join("; ") : res.text.slice(0, 200);
    const msg = `vault ${what} answered ${res.status}: ${errors}`;
    if (res.status >= 500 || res.status === 429) throw new CaProviderError(msg, "unavailable");
    if (res.status === 401 || res.status === 403) throw new CaProviderError(msg, "unauthenticated");
    throw new CaProviderError(msg, "invalid");
  }

  const healthUrl = new URL("/v1/sys/health", base);
  return {
    endpoint: `vault ${base.origin}`,
    async probe(signal) {
      // Unauthenticated; 200 active, 429 standby, 472/473 DR/performance standby can serve;
      // 501 (not initialised) and 503 (sealed) cannot.
      const res = await request(healthUrl, undefined, {}, options.caPem, timeoutMs, "GET", signal);
      if (![200, 429, 472, 473].includes(res.status)) throw new Error(`vault ${base.origin} health answered ${res.status}`);
    },
    async sign(csrPem, token, ttlSeconds) {
      const login = await put(loginUrl, { jwt: token, role: options.role }, {}, "login");
      const clientToken = (login.auth as { client_token?: unknown } | undefined)?.client_token;
      if (typeof clientToken !== "string" || clientToken === "") {
        throw new CaProviderError("vault login answered without auth.client_token", "invalid");
      }
      const body: Record<string, string> = { csr: csrPem, format: "pem" };
      if (ttlSeconds !== undefined) body.ttl = `${Math.floor(ttlSeconds)}s`;
      const signed = await put(signUrl, body, { "X-Vault-Token": clientToken }, "sign");
      const data = signed.data as { certificate?: unknown; ca_chain?: unknown; issuing_ca?: unknown } | undefined;
      if (typeof data?.certificate !== "string") throw new CaProviderError("vault sign answered without data.certificate", "invalid");
      const rest = Array.isArray(data.ca_chain)
        ? data.ca_chain.filter((c): c is string => typeof c === "string")
        : typeof data.issuing_ca === "string"
          ? [data.issuing_ca]
          : [];
      const leaf = data.certificate.trim();
      return [leaf, ...rest.map((c) => c.trim()).filter((c) => c !== leaf)];
    },
  };
}

function request(
  url: URL,
  body: string | undefined,
  headers: Record<string, string>,
  caPem: string | undefined,
  timeoutMs: number,
  method: "PUT" | "GET" = "PUT",
  signal?: AbortSignal,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const opts: https.RequestOptions = {
      method,
      headers: body === undefined ? headers : { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers },
      timeout: timeoutMs,
      agent: false,
      ...(signal ? { signal } : {}),
    };
    if (url.protocol === "https:" && caPem) opts.ca = caPem;
    const req = (url.protocol === "https:" ? https : http).request(url, opts, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_RESPONSE_BYTES) req.destroy(new Error("response too large"));
        else chunks.push(c);
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}
