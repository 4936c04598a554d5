// IstioCertificateService/CreateCertificate over TLS. A thin edge: it reads the
// bearer token, asks the authenticator who is calling, asks the CA to sign, and
// maps typed errors to gRPC codes. Its own server certificate comes from the CA.
import { isIP } from "node:net";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import pino from "pino";
import { Counter, Histogram, Registry } from "prom-client";
import { IstioCertificateResponseSchema, IstioCertificateService } from "../../gen/istio/v1/auth/ca_pb.js";
import { startGrpcServer, type RunningGrpcServer, type StartedGrpcServer } from "../net/index.js";
import type { CertificateAuthority } from "./certificate-authority.js";
import { createRenewingServerCertificate } from "./server-certificate.js";
import { AuthenticationError, InvalidRequestError, VerifierUnavailableError } from "./errors.js";
import { CryptoPoolError } from "./crypto-pool.js";
import { unverifiedClaims, type TokenAuthenticator } from "./jwt-authenticator.js";

export interface CaServerOptions {
  ca: CertificateAuthority;
  /**
   * Verifies the token of every request. meshkey serve gives it the verifier itself, not the
   * withVerifiedTokenMemo one that the node agent and its in-process CA provider share.
   */
  authenticator: TokenAuthenticator;
  listen: { host: string; port: number };
  logger?: Logger;
  registry?: Registry;
  /** Lifetime of the server's own TLS certificate (default 30 days); renewed at half-life. */
  serverCertTtlSeconds?: number;
}

/**
 * DNS names always on the CA endpoint's certificate. startCaServer adds the listen host when it is
 * a name; its IP SANs are 127.0.0.1, the listen IP unless it is a wildcard, and ::1 on `::`/`::1`.
 */
export const CA_SERVER_DNS_NAMES = ["istiod.istio-system.svc", "istiod.istio-system.svc.cluster.local", "localhost"];

/** The largest CreateCertificate request accepted (a CSR is ~0.5–2 KiB). */
const MAX_REQUEST_BYTES = 64 * 1024;

interface CaMetrics {
  csrs: Counter<"result">;
  signing: Histogram;
}

function metricsOn(registry: Registry): CaMetrics {
  const existing = registry.getSingleMetric("meshkey_ca_csr_total") as Counter<"result"> | undefined;
  if (existing) {
    return { csrs: existing, signing: registry.getSingleMetric("meshkey_ca_signing_seconds") as Histogram };
  }
  const csrs = new Counter({
    name: "meshkey_ca_csr_total",
    help: "CreateCertificate requests by result (issued, unauthenticated, invalid, error)",
    labelNames: ["result"],
    registers: [registry],
  });
  for (const result of ["issued", "unauthenticated", "invalid", "error"]) csrs.inc({ result }, 0);
  return {
    csrs,
    signing: new Histogram({
      name: "meshkey_ca_signing_seconds",
      help: "Time to verify a CSR and sign its certificate",
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1],
      registers: [registry],
    }),
  };
}

export function bearerToken(authorization: string | null): string | undefined {
  if (!authorization) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  return m?.[1];
}

/** The CreateCertificate route that startCaServer serves. */
export function caRoutes(options: Omit<CaServerOptions, "listen">): (router: ConnectRouter) => void {
  const log = options.logger ?? pino({ level: "silent" });
  const metrics = metricsOn(options.registry ?? new Registry());
  return (router) => {
    router.service(IstioCertificateService, {
      async createCertificate(req, ctx) {
        const token = bearerToken(ctx.requestHeader.get("authorization"));
        if (!token) {
          metrics.csrs.inc({ result: "unauthenticated" });
          throw new ConnectError("missing bearer token in the authorization header", Code.Unauthenticated);
        }
        let caller;
        try {
          caller = await options.authenticator.authenticate(token);
        } catch (err) {
          if (err instanceof AuthenticationError) {
            metrics.csrs.inc({ result: "unauthenticated" });
            log.info(
              { err: err.message, presented: unverifiedClaims(token) ?? "(not a JWT)", ...(options.authenticator.expects ? { expected: options.authenticator.expects() } : {}) },
              "CreateCertificate: authentication failed",
            );
            throw new ConnectError(err.message, Code.Unauthenticated);
          }
          // The verifier is down or broke: a server fault, never reported as a bad token, and
          // without the server's paths or addresses (those go to the log).
          metrics.csrs.inc({ result: "error" });
          if (err instanceof VerifierUnavailableError) {
            log.warn({ err: err.message }, "CreateCertificate: token verifier unavailable");
            throw new ConnectError(`token verifier unavailable, retry later: ${err.publicMessage}`, Code.Unavailable);
          }
          log.error({ err: (err as Error).message }, "CreateCertificate: token verification failed");
          throw new ConnectError("token verification failed inside the CA", Code.Internal);
        }
        const ttl = Number(req.validityDuration);
        const started = process.hrtime.bigint();
        let chain: string[];
        try {
          chain = await options.ca.sign(req.csr, caller, ttl);
        } catch (err) {
          if (err instanceof InvalidRequestError) {
            metrics.csrs.inc({ result: "invalid" });
            log.info({ namespace: caller.namespace, serviceAccount: caller.serviceAccount, err: err.message }, "CreateCertificate: invalid request");
            throw new ConnectError(err.message, Code.InvalidArgument);
          }
          metrics.csrs.inc({ result: "error" });
          // The signing workers are all busy (their queue is full) or one stopped: retry later.
          if (err instanceof CryptoPoolError) {
            log.warn({ err: err.message }, "CreateCertificate: signing workers unavailable");
            throw new ConnectError("the CA is busy, retry later", Code.Unavailable);
          }
          log.error({ err: (err as Error).message }, "CreateCertificate: signing failed");
          throw new ConnectError("signing failed", Code.Internal);
        }
        metrics.signing.observe(Number(process.hrtime.bigint() - started) / 1e9);
        metrics.csrs.inc({ result: "issued" });
        log.debug({ namespace: caller.namespace, serviceAccount: caller.serviceAccount }, "CreateCertificate: issued");
        const init: MessageInitShape<typeof IstioCertificateResponseSchema> = { certChain: chain };
        return create(IstioCertificateResponseSchema, init);
      },
    });
  };
}

/** IstioCertificateService/CreateCertificate over TLS (server cert issued by the CA itself). */
export async function startCaServer(options: CaServerOptions): Promise<RunningGrpcServer & { readonly tlsCertPem: string }> {
  const ips = new Set<string>(["127.0.0.1"]);
  const host = options.listen.host.replace(/^\[|\]$/g, "");
  if (isIP(host) && host !== "0.0.0.0" && host !== "::") ips.add(host);
  if (host === "::" || host === "::1") ips.add("::1");
  const dnsNames = [...CA_SERVER_DNS_NAMES];
  if (!isIP(host) && !dnsNames.includes(host)) dnsNames.push(host);
  // The server's own certificate is renewed at half its life, for as long as the process runs.
  let server: StartedGrpcServer | undefined;
  const serverCert = createRenewingServerCertificate({
    ca: options.ca,
    sans: { dnsNames, ips: [...ips] },
    ...(options.serverCertTtlSeconds !== undefined ? { ttlSeconds: options.serverCertTtlSeconds } : {}),
    onRenew: (cert) => server?.setTlsCertificate({ key: cert.privateKeyPem, cert: cert.certChainPem }),
    name: "CA server",
    ...(options.logger ? { logger: options.logger } : {}),
  });
  try {
    server = await startGrpcServer({
      routes: caRoutes(options),
      listen: options.listen,
      tls: { key: serverCert.current.privateKeyPem, cert: serverCert.current.certChainPem },
      maxMessageBytes: MAX_REQUEST_BYTES,
    });
  } catch (err) {
    serverCert.stop();
    throw err;
  }
  const started = server;
  return {
    get address() {
      return started.address;
    },
    get port() {
      return started.port;
    },
    sessionCount: () => started.sessionCount(),
    close(graceMs?: number) {
      serverCert.stop();
      return started.close(graceMs);
    },
    // A getter: callers see the renewed certificate.
    get tlsCertPem() {
      return serverCert.current.certChainPem;
    },
  };
}
