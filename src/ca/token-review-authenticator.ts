// Kubernetes TokenReview: the API server says whether a token is valid, for
// which audiences, and whose it is.
import * as http from "node:http";
import * as https from "node:https";
import { AuthenticationError, VerifierUnavailableError } from "./errors.js";
import { invalidIdentityReason, type AuthenticatedCaller } from "./identity.js";
import { DEFAULT_AUDIENCE, type TokenAuthenticator } from "./jwt-authenticator.js";

export interface TokenReviewAuthenticatorOptions {
  /** The API server (https://host:port) or the full tokenreviews URL. */
  url: string;
  /** Audiences the token must be valid for (default ["istio-ca"]). */
  audiences?: string[];
  /** The CA's own credential for the API server. */
  bearerToken?: string;
  /** Trust anchors for the API server's certificate. */
  caPem?: string;
  /** Deadline of one review (default 5 s). */
  timeoutMs?: number;
}

const PATH = "/apis/authentication.k8s.io/v1/tokenreviews";
const MAX_RESPONSE_BYTES = 1024 * 1024;

interface TokenReviewStatus {
  authenticated?: boolean;
  error?: string;
  audiences?: string[];
  user?: { username?: string };
}

function post(url: URL, body: string, headers: Record<string, string>, caPem: string | undefined, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const lib = url.protocol === "https:" ? https : http;
    const req = lib.request(
      url,
      {
        method: "POST",
        headers: { ...headers, "content-type": "application/json", accept: "application/json", "content-length": Buffer.byteLength(body) },
        timeout: timeoutMs,
        ...(caPem && url.protocol === "https:" ? { ca: caPem } : {}),
      },
      (res) => {
        let size = 0;
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) req.destroy(new Error("TokenReview response too large"));
          else chunks.push(c);
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("TokenReview request timed out")));
    req.on("error", reject);
    req.end(body);
  });
}

export function createTokenReviewAuthenticator(options: TokenReviewAuthenticatorOptions): TokenAuthenticator {
  const base = options.url.replace(/\/$/, "");
  const url = new URL(base.endsWith("/tokenreviews") ? base : `${base}${PATH}`);
  const audiences = options.audiences ?? [DEFAULT_AUDIENCE];
  return {
    expects: () => ({ audience: audiences, keys: `TokenReview ${url.href}` }),
    async authenticate(token: string): Promise<AuthenticatedCaller> {
      if (typeof token !== "string" || token.length === 0) throw new AuthenticationError("no token");
      const body = JSON.stringify({
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenReview",
        spec: { token, audiences },
      });
      const headers: Record<string, string> = {};
      if (options.bearerToken) headers.authorization = `Bearer ${options.bearerToken}`;
      let res: { status: number; body: string };
      try {
        res = await post(url, body, headers, options.caPem, options.timeoutMs ?? 5_000);
      } catch (err) {
        // Unreachable, reset or timed out: nothing is known about the token.
        const code = (err as { code?: string }).code;
        throw new VerifierUnavailableError(
          `TokenReview at ${url.origin} failed: ${code ?? (err as Error).message}`,
          "the TokenReview API server is unreachable",
          { cause: err },
        );
      }
      if (res.status < 200 || res.status >= 300) {
        // 5xx, 429, or the API server refusing the CA's own credential (401/403): a server-side fault.
        throw new VerifierUnavailableError(
          `TokenReview at ${url.origin} answered HTTP ${res.status}`,
          `the TokenReview API server answered HTTP ${res.status}`,
        );
      }
      let status: TokenReviewStatus;
      try {
        status = ((JSON.parse(res.body) as { status?: TokenReviewStatus }).status ?? {}) as TokenReviewStatus;
      } catch {
        throw new VerifierUnavailableError(
          `TokenReview at ${url.origin} answered something that is not JSON`,
          "the TokenReview API server answered something that is not JSON",
        );
      }
      if (status.authenticated !== true) {
        throw new AuthenticationError(`token rejected by TokenReview${status.error ? `: ${status.error}` : ""}`);
      }
      if (!Array.isArray(status.audiences) || !status.audiences.some((a) => audiences.includes(a))) {
        throw new AuthenticationError(`token is not valid for audience ${audiences.join(", ")}`);
      }
      const username = status.user?.username ?? "";
      const parts = username.split(":");
      if (parts.length !== 4 || parts[0] !== "system" || parts[1] !== "serviceaccount") {
        throw new AuthenticationError(`TokenReview user "${username}" is not a service account`);
      }
      const [, , namespace, serviceAccount] = parts as [string, string, string, string];
      const invalid = invalidIdentityReason({ namespace, serviceAccount });
      if (invalid) throw new AuthenticationError(`TokenReview user: ${invalid}`);
      return { namespace, serviceAccount, subject: username, expiresAt: undefined };
    },
  };
}
