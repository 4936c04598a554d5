// CaProvider for a remote IstioCertificateService (istiod, or meshkey's own CA
// server) over TLS: CreateCertificate with `authorization: Bearer <token>`.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { isIP } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { IstioCertificateService } from "../../gen/istio/v1/auth/ca_pb.js";
import { CaProviderError, type CaProvider } from "./ca-provider.js";

export interface IstioCaProviderOptions {
  /** host:port of the CA (e.g. istiod.istio-system.svc:15012). */
  address: string;
  /** PEM trust anchor(s) for the CA server's certificate. */
  rootCertPem: string;
  /** TLS server name to verify (default: the host of `address`). */
  serverName?: string;
  /** Deadline of one call (default 10 s). */
  timeoutMs?: number;
}

const TRANSIENT = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted, Code.Internal, Code.Unknown, Code.Canceled]);

export function createIstioCaProvider(options: IstioCaProviderOptions): CaProvider & { close(): void } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(options.address);
  if (!m) throw new TypeError(`istio CA address must be host:port, got "${options.address}"`);
  const host = m[1]!.replace(/^\[|\]$/g, "");
  const baseUrl = `https://${options.address}`;
  // SNI cannot carry an IP address: for an IP, Node checks the certificate against the host itself.
  const servername = options.serverName ?? (isIP(host) ? undefined : host);
  const tls = { ca: options.rootCertPem, ALPNProtocols: ["h2"], ...(servername ? { servername } : {}) };
  const sessionManager = new Http2SessionManager(baseUrl, { idleConnectionTimeoutMs: 60_000 }, tls);
  const transport = createGrpcTransport({ baseUrl, sessionManager, nodeOptions: tls }) // gRPC: always HTTP/2;
  const client = createClient(IstioCertificateService, transport);
  const timeoutMs = options.timeoutMs ?? 10_000;
  const port = Number(m[2]);
  return {
    endpoint: `istio CA ${options.address}`,
    probe(signal) {
      // A TLS handshake that verifies the CA's certificate against the configured root, then
      // close: no CSR, no token. What a sign needs before the CA looks at the request.
      return new Promise<void>((resolve, reject) => {
        if (signal.aborted) return reject(new Error(`no TLS handshake with ${options.address}: aborted`));
        const socket = tlsConnect({ host, port, ...tls });
        const fail = (why: string) => {
          signal.removeEventListener("abort", onAbort);
          socket.destroy();
          reject(new Error(`no TLS handshake with ${options.address}: ${why}`));
        };
        const onAbort = () => fail("timed out");
        signal.addEventListener("abort", onAbort, { once: true });
        socket.once("secureConnect", () => {
          signal.removeEventListener("abort", onAbort);
          socket.end();
          socket.destroy();
          resolve();
        });
        socket.once("error", (err) => fail(err.message));
      });
    },
    async sign(csrPem, token, ttlSeconds) {
      try {
        const res = await client.createCertificate(
          { csr: csrPem, validityDuration: BigInt(Math.max(0, Math.floor(ttlSeconds ?? 0))) },
          { headers: { authorization: `Bearer ${token}` }, timeoutMs },
        );
        if (res.certChain.length === 0) throw new CaProviderError("istio CA returned no certificate", "invalid");
        return res.certChain;
      } catch (err) {
        if (err instanceof CaProviderError) throw err;
        const ce = ConnectError.from(err);
        const where = `istio CA ${options.address}`;
        if (ce.code === Code.Unauthenticated || ce.code === Code.PermissionDenied) {
          throw new CaProviderError(`${where} rejected the token: ${ce.rawMessage}`, "unauthenticated", { cause: ce });
        }
        if (TRANSIENT.has(ce.code)) {
          throw new CaProviderError(`${where} unavailable: ${ce.rawMessage}`, "unavailable", { cause: ce });
        }
        throw new CaProviderError(`${where} refused the request (${Code[ce.code]}): ${ce.rawMessage}`, "invalid", { cause: ce });
      }
    },
    close() {
      sessionManager.abort();
    },
  };
}
