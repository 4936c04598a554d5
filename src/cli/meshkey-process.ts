// The composition root of `meshkey serve`: builds each enabled part from the
// configuration, wires their debug and readiness into the admin server, and
// shuts them down in order. Parts meet only through their index.ts APIs.
import { mkdir, readFile, access, constants as fsConstants } from "node:fs/promises";
import { X509Certificate } from "node:crypto";
import { dirname, join, resolve } from "node:path";
import type { Logger } from "pino";
import { Gauge, Registry, collectDefaultMetrics } from "prom-client";
import {
  canIssueServerCertificates,
  CONTROL_PLANE_IDENTITY,
  createCryptoPool,
  createJwtAuthenticator,
  createTokenReviewAuthenticator,
  defaultCryptoWorkers,
  DEV_JWKS_FILE,
  fingerprintSha256,
  openCertificateAuthority,
  openDevTokenIssuer,
  startCaServer,
  withVerifiedTokenMemo,
  type CertificateAuthority,
  type CryptoPool,
  type DevTokenIssuer,
  type JwtAuthenticatorOptions,
  type TokenAuthenticator,
} from "../ca/index.js";
import {
  createBuiltinCaProvider,
  createCaReachability,
  createIstioCaProvider,
  createSecretCache,
  createVaultCaProvider,
  prepareSocketDirectory,
  startSdsServer,
  type CaProvider,
  type CaReachability,
  type RunningSdsServer,
  type SdsDebugSnapshot,
  type SecretCache,
} from "../sds/index.js";
import { startAdminServer, DebugPageError, type DebugPage, type RunningAdminServer } from "../admin/index.js";
import type { RunningGrpcServer } from "../net/index.js";
import { DEFAULT_SDS_SOCKET } from "../spiffe/index.js";
import { DEV_TOKEN_DEFAULT_TTL_SECONDS, parseHostPort, type ServeConfig } from "./serve-config.js";
import { startControlPlane, type RunningControlPlane } from "./control-plane.js";
import { createStatusData } from "./status-data.js";
import { MESHKEY_VERSION } from "./version.js";

export interface RunningMeshkey {
  readonly config: ServeConfig;
  /** Actual addresses (ports resolved when 0 was asked for). */
  readonly addresses: { sds?: string; xds?: string; xdsTls?: string; ca?: string; admin: string };
  /** The trust anchor workloads get as ROOTCA (undefined in an agent-only process until first issuance). */
  readonly rootCertPem: string | undefined;
  readonly devIssuer: DevTokenIssuer | undefined;
  readonly secretCache: SecretCache | undefined;
  readonly registry: Registry;
  close(): Promise<void>;
}

export class StartupError extends Error {
  override name = "StartupError";
}

export async function startMeshkey(config: ServeConfig, log: Logger): Promise<RunningMeshkey> {
  const registry = new Registry();
  // Standard process_* and nodejs_* metrics, under meshkey_ once (meshkey_process_cpu_seconds_total).
  collectDefaultMetrics({ register: registry, prefix: "meshkey_" });
  new Gauge({
    name: "meshkey_build_info",
    help: "Always 1; the labels say which meshkey (version) runs on which Node.js (node)",
    labelNames: ["version", "node"] as const,
    registers: [registry],
  }).set({ version: MESHKEY_VERSION, node: process.version }, 1);
  const stateDir = resolve(config.stateDir);
  await prepareStateDir(stateDir);

  const stops: Array<() => Promise<void> | void> = [];
  const ready: Record<string, boolean> = {};
  const debugPages: Record<string, DebugPage> = {};
  const addresses: { sds?: string; xds?: string; xdsTls?: string; ca?: string; admin: string } = { admin: "" };
  let ca: CertificateAuthority | undefined;
  let devIssuer: DevTokenIssuer | undefined;
  let secretCache: SecretCache | undefined;
  let verifier: TokenAuthenticator | undefined;
  let upstreamCa: CaReachability | undefined;
  // The CA holds its root in the state dir; an agent using the builtin provider needs it in process.
  const needLocalCa = config.ca || (config.sds && config.caProvider === "builtin");
  // Every check of an enabled part is false until that part is up: the admin server starts
  // first, so that /readyz answers 503 (not "connection refused") while the rest starts.
  if (needLocalCa) ready.ca = false;
  if (config.ca) ready.caServer = false;
  if (config.sds) ready.sds = false;
  if (config.xds) {
    ready.meshParsed = false;
    ready.xds = false;
  }
  // The status page's data, replaced by the full one once the parts it reads are running.
  let status = createStatusData({ trustDomain: config.trustDomain, registry, rootCertPem: () => ca?.rootCertPem });
  const admin: RunningAdminServer = await startAdminServer({
    listen: parseHostPort(config.adminListen, "--admin-listen"),
    registry,
    readiness: () => {
      const checks = {
        ...ready,
        // No verifier yet: not ready (a verifier without keys to load is always ready).
        tokenVerifier: verifier !== undefined && (verifier.ready?.() ?? true),
        ...(upstreamCa ? { upstreamCa: upstreamCa.reachable() } : {}),
      };
      return { ready: Object.values(checks).every(Boolean), checks };
    },
    debugPages,
    status: () => status(),
  });
  addresses.admin = admin.address;
  log.info({ admin: admin.address }, "admin server listening; /readyz is 503 until every part is up");

  try {
    // Key generation (agent) and CSR verification and signing (CA) run on worker threads, so
    // that the main thread keeps to the protocols; --crypto-workers 0 keeps them here.
    const cryptoWorkers = config.cryptoWorkers ?? defaultCryptoWorkers();
    let cryptoPool: CryptoPool | undefined;
    if (cryptoWorkers > 0 && (needLocalCa || config.sds)) {
      const pool = createCryptoPool({ workers: cryptoWorkers });
      cryptoPool = pool;
      // First in, last out: every part that submits jobs has stopped before the workers go.
      stops.push(() => pool.close());
    }
    if (needLocalCa) {
      ca = await openCertificateAuthority({
        stateDir,
        trustDomain: config.trustDomain,
        keyType: config.keyType,
        pluginCertsDir: config.pluginCerts,
        certTtlSeconds: config.certTtlSeconds,
        maxCertTtlSeconds: config.maxCertTtlSeconds,
        ...(cryptoPool ? { cryptoPool } : {}),
      });
      ready.ca = true;
    }

    const authenticator = await createAuthenticator(config, stateDir, (issuer) => (devIssuer = issuer));
    verifier = authenticator;
    // A remote JWKS is fetched at start; until it is loaded no token can be checked (not ready),
    // and a failure here is retried on the first token, rate-limited.
    await authenticator.warmUp?.();
    if (authenticator.ready && !authenticator.ready()) {
      log.warn({ jwks: config.jwks ?? config.jwtIssuer }, "token verifier keys could not be loaded at start: not ready until they are");
    }
    warnOnTokenAndRotationMismatch(config, log);
    // The SDS server verifies the token that opens a stream and the builtin CA provider the same
    // token again for the CSR: one memo shared by both makes that one verification (one
    // TokenReview call). The CA server over TLS gets the verifier itself: it checks every token.
    const agentAuthenticator = withVerifiedTokenMemo(authenticator);

    if (config.ca && ca) {
      const caServer = await startCaServer({
        ca,
        authenticator,
        listen: parseHostPort(config.caListen, "--ca-listen"),
        logger: log.child({ part: "ca" }),
        registry,
      });
      stops.push(() => caServer.close());
      addresses.ca = caServer.address;
      ready.caServer = true;
    }

    let sdsSocketPath = config.sdsSocket;
    let sdsDebug: (() => SdsDebugSnapshot) | undefined;
    if (config.sds) {
      const caProvider = await createCaProvider(config, ca, agentAuthenticator);
      // A remote CA (istio, vault) is probed periodically: /readyz says when it is out of reach.
      const reach = createCaReachability({ provider: caProvider, logger: log.child({ part: "sds-cache" }), registry });
      if (reach) {
        upstreamCa = reach;
        stops.push(() => reach.stop());
      }
      const localCa = ca;
      secretCache = createSecretCache({
        caProvider,
        trustDomain: config.trustDomain,
        keyType: config.keyType,
        graceRatio: config.graceRatio,
        certTtlSeconds: config.certTtlSeconds,
        ...(localCa ? { rootCertPem: () => localCa.rootCertPem } : {}),
        ...(cryptoPool ? { createKeyAndCsr: cryptoPool.createKeyAndCsr } : {}),
        logger: log.child({ part: "sds-cache" }),
        registry,
      });
      const cache = secretCache;
      stops.push(() => cache.close());
      sdsSocketPath = await chooseSocketPath(config, stateDir, log);
      const sds: RunningSdsServer = await startSdsServer({
        socketPath: sdsSocketPath,
        cache,
        authenticator: agentAuthenticator,
        logger: log.child({ part: "sds" }),
        registry,
      });
      stops.push(() => sds.close());
      addresses.sds = sds.address;
      debugPages.sds = () => sds.debug();
      sdsDebug = () => sds.debug();
      ready.sds = true;
    }

    let controlPlane: RunningControlPlane | undefined;
    if (config.xds) {
      // With the CA in this process, ADS is served over mTLS too (--xds-tls-listen).
      const tlsCa = config.ca && canIssueServerCertificates(ca) ? ca : undefined;
      controlPlane = await startControlPlane(config, sdsSocketPath, log.child({ part: "xds" }), registry, tlsCa, {
        onMeshParsed: () => (ready.meshParsed = true),
      });
      const cp = controlPlane;
      stops.push(() => cp.close());
      addresses.xds = cp.server.address;
      if (cp.tlsServer) addresses.xdsTls = cp.tlsServer.address;
      debugPages.syncz = () => cp.syncStatus();
      debugPages.config_dump = (query) => {
        const node = query.get("node");
        if (!node) throw new DebugPageError("config_dump needs ?node=<node id>", 400);
        const dump = cp.configDump(node);
        if (dump === undefined) throw new DebugPageError(`no node "${node}" has connected or been rendered`);
        return dump;
      };
      ready.xds = true;
    }

    // The public trust anchor (no key), for `meshkey proxy-config secret` to fingerprint.
    const rootCa = ca;
    if (rootCa) {
      new Gauge({
        name: "meshkey_ca_root_expiry_seconds",
        help: "Seconds until the CA root (the trust anchor workloads get as ROOTCA) expires",
        registers: [registry],
        collect() {
          this.set((new Date(new X509Certificate(rootCa.rootCertPem).validTo).getTime() - Date.now()) / 1000);
        },
      });
      debugPages.trust_bundle = () => {
        const root = new X509Certificate(rootCa.rootCertPem);
        return { trustDomain: config.trustDomain, rootCertPem: rootCa.rootCertPem, fingerprintSha256: fingerprintSha256(rootCa.rootCertPem), notAfter: new Date(root.validTo).toISOString() };
      };
    }

    // The status page (`/`, `/status.json`): read-only views of the parts above.
    status = createStatusData({
      trustDomain: config.trustDomain,
      registry,
      rootCertPem: () => ca?.rootCertPem,
      ...(sdsDebug ? { sds: sdsDebug } : {}),
      ...(controlPlane ? { controlPlane: controlPlane.status } : {}),
    });

    let closing: Promise<void> | undefined;
    return {
      config,
      addresses,
      get rootCertPem() {
        return ca?.rootCertPem;
      },
      devIssuer,
      secretCache,
      registry,
      close() {
        closing ??= (async () => {
          admin.setDraining();
          await closeAll(stops, log);
          await admin.close();
        })();
        return closing;
      },
    };
  } catch (err) {
    await closeAll(stops, log);
    await admin.close();
    throw err;
  }
}

async function closeAll(stops: Array<() => Promise<void> | void>, log: Logger): Promise<void> {
  // Last started, first stopped: the servers go before the caches they read.
  for (const stop of stops.reverse()) {
    try {
      await stop();
    } catch (err) {
      log.warn({ err }, "error while stopping a part");
    }
  }
}

/**
 * The state dir must exist and be readable. Write access is not required: a read-only dir
 * that already holds the root and the issuer is usable, and a write that is needed fails
 * naming its file.
 */
async function prepareStateDir(stateDir: string): Promise<void> {
  try {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await access(stateDir, fsConstants.R_OK | fsConstants.X_OK);
  } catch (err) {
    throw new StartupError(`state dir ${stateDir} is not usable: ${(err as Error).message}`);
  }
}

async function createAuthenticator(
  config: ServeConfig,
  stateDir: string,
  onDevIssuer: (issuer: DevTokenIssuer) => void,
): Promise<TokenAuthenticator> {
  if (config.tokenReview) {
    return createTokenReviewAuthenticator({ url: config.tokenReview, audiences: [config.jwtAudience] });
  }
  let jwks: JwtAuthenticatorOptions["jwks"];
  let issuer = config.jwtIssuer;
  if (config.jwks) {
    jwks = /^https?:\/\//.test(config.jwks) ? { url: config.jwks } : { file: config.jwks };
  } else if (config.jwtIssuer) {
    jwks = { oidcIssuer: config.jwtIssuer };
  } else {
    // Embedded default: the dev issuer of the state dir (what `meshkey token` signs with).
    const dev = await openDevTokenIssuer(stateDir);
    onDevIssuer(dev);
    jwks = { keys: dev.jwks, description: `the dev issuer's ${join(config.stateDir, DEV_JWKS_FILE)}` };
    issuer = dev.issuer;
  }
  return createJwtAuthenticator({ jwks, audience: config.jwtAudience, ...(issuer ? { issuer } : {}) });
}

async function createCaProvider(
  config: ServeConfig,
  ca: CertificateAuthority | undefined,
  authenticator: TokenAuthenticator,
): Promise<CaProvider> {
  switch (config.caProvider) {
    case "builtin":
      if (!ca) throw new StartupError("the builtin CA provider needs the CA in this process");
      return createBuiltinCaProvider({ ca, authenticator });
    case "istio": {
      const rootFile = config.caRootCert;
      const rootCertPem = rootFile ? await readFileOrFail(rootFile, "--ca-root-cert") : ca?.rootCertPem;
      if (!rootCertPem) throw new StartupError("--ca-provider istio needs --ca-root-cert FILE (the remote CA's root)");
      return createIstioCaProvider({ address: config.caAddress!, rootCertPem });
    }
    case "vault":
      return createVaultCaProvider({
        address: config.vaultAddress!,
        authPath: config.vaultAuthPath,
        role: config.vaultRole,
        signPath: config.vaultSignPath,
        ...(config.vaultCaCert ? { caPem: await readFileOrFail(config.vaultCaCert, "--vault-ca-cert") } : {}),
      });
  }
}

async function readFileOrFail(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    throw new StartupError(`${what} ${file}: ${(err as Error).message}`);
  }
}

/**
 * The default socket lives in /var/run/sds, which a non-root user usually cannot
 * create: then fall back to <state-dir>-sds/uds_path and say so. A path the user chose
 * is used as given (errors are reported, never worked around).
 *
 * Why there: the socket must be reachable by an Envoy of another uid, so not inside the
 * 0700 state dir, nor under $XDG_RUNTIME_DIR (0700 and owned by the user, by its spec).
 * A sibling of the state dir is where the operator already chose to keep the agent's
 * files; it is the agent's own directory, 0755 (never group- or other-writable, never a
 * symlink), like /var/run/sds: only the agent may create or replace the socket.
 */
async function chooseSocketPath(config: ServeConfig, stateDir: string, log: Logger): Promise<string> {
  if (config.sdsSocketExplicit || config.sdsSocket !== DEFAULT_SDS_SOCKET) return config.sdsSocket;
  try {
    await mkdir(dirname(config.sdsSocket), { recursive: true, mode: 0o755 });
    await access(dirname(config.sdsSocket), fsConstants.W_OK);
    return config.sdsSocket;
  } catch (err) {
    let dir;
    try {
      dir = prepareSocketDirectory(fallbackSocketDir(stateDir));
    } catch (dirErr) {
      throw new StartupError(`cannot use the default SDS socket directory ${dirname(config.sdsSocket)} (${(err as Error).message}), nor the fallback: ${(dirErr as Error).message}`);
    }
    const fallback = join(dir.path, "uds_path");
    log.warn(
      { wanted: config.sdsSocket, fallback, reason: (err as Error).message, directory: dir.path, directoryMode: "0755", created: dir.created },
      `cannot use the default SDS socket directory; falling back to ${dir.path} (mode 0755: only this agent may write there)`,
    );
    if (dir.notSearchableByOthers !== undefined) {
      log.warn(
        { fallback, notSearchable: dir.notSearchableByOthers },
        `an Envoy running as another user may not reach the SDS socket: ${dir.notSearchableByOthers} is not searchable by others (chmod o+x it, or pass --sds-socket)`,
      );
    }
    return fallback;
  }
}

/** Where the SDS socket goes when /var/run/sds cannot be used: the state dir's sibling, `<state-dir>-sds`. */
export function fallbackSocketDir(stateDir: string): string {
  return `${resolve(stateDir)}-sds`;
}

/** The short human summary printed once everything listens. */
export function describeRunningMeshkey(m: RunningMeshkey): string {
  const lines = ["meshkey is ready", `  trust domain   ${m.config.trustDomain}`];
  if (m.rootCertPem) {
    lines.push(`  root           ${fingerprintSha256(m.rootCertPem)}  (SHA-256 fingerprint, as openssl x509 -fingerprint -sha256)`);
  }
  if (m.addresses.ca) lines.push(`  CA             ${m.addresses.ca}  (IstioCertificateService, TLS)`);
  if (m.addresses.sds) lines.push(`  SDS            ${m.addresses.sds}`);
  if (m.addresses.xds) lines.push(`  ADS            ${m.addresses.xds}  (plaintext)`);
  if (m.addresses.xdsTls) lines.push(`  ADS-mTLS       ${m.addresses.xdsTls}  (server spiffe://${m.config.trustDomain}/ns/${CONTROL_PLANE_IDENTITY.namespace}/sa/${CONTROL_PLANE_IDENTITY.serviceAccount}, client certificate required)`);
  lines.push(`  admin          http://${m.addresses.admin}  (status page /, /status.json /readyz /metrics /debug/sds /debug/syncz)`);
  if (m.addresses.xds && m.addresses.sds) {
    const socket = m.addresses.sds.replace(/^unix:/, "");
    lines.push(
      "",
      "Point an Envoy at it:",
      `  npx meshkey token --namespace foo --service-account sleep --state-dir ${m.config.stateDir} > istio-token`,
      `  npx meshkey bootstrap --role sidecar --node-id sidecar~127.0.1.2~sleep-1.foo~foo.svc.cluster.local \\`,
      `      --namespace foo --service-account sleep --trust-domain ${m.config.trustDomain} \\`,
      `      --xds-address ${m.addresses.xds} --sds-socket ${socket} --token-path "$PWD/istio-token" -o envoy.json`,
      `  envoy -c envoy.json`,
    );
    if (m.addresses.xdsTls) {
      lines.push(
        `  (or over mTLS: add --xds-tls and use --xds-address ${m.addresses.xdsTls})`,
        "",
        "Or put a pilot Envoy (the control plane's identity) in front of the plaintext ADS port:",
        `  npx meshkey token --namespace ${CONTROL_PLANE_IDENTITY.namespace} --service-account ${CONTROL_PLANE_IDENTITY.serviceAccount} --state-dir ${m.config.stateDir} > istiod-token`,
        `  npx meshkey bootstrap --role pilot --node-id sidecar~127.0.0.1~istiod-1.${CONTROL_PLANE_IDENTITY.namespace}~${CONTROL_PLANE_IDENTITY.namespace}.svc.cluster.local \\`,
        `      --trust-domain ${m.config.trustDomain} --local-port ${portOf(m.addresses.xds)} --listen-address 127.0.0.1 --listen-port 15013 --admin-port 15001 \\`,
        `      --sds-socket ${socket} --token-path "$PWD/istiod-token" -o pilot.json`,
        `  envoy -c pilot.json --disable-hot-restart     # then sidecars: --xds-tls --xds-address 127.0.0.1:15013`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}

function portOf(address: string): string {
  return address.slice(address.lastIndexOf(":") + 1);
}

export type { RunningGrpcServer };

/**
 * Certificates renew after (1 - grace ratio) × cert TTL, with the token the workload presented.
 * A token that expires before that renewal closes the streams at rotation and the certificate
 * then lapses unless a fresh token is written; say so at start, when it can still be fixed.
 */
function warnOnTokenAndRotationMismatch(config: ServeConfig, log: Logger): void {
  if (!config.sds) return;
  const rotationSeconds = config.certTtlSeconds * (1 - config.graceRatio);
  const renewalWindowSeconds = config.certTtlSeconds * config.graceRatio;
  const usesDevIssuer = !config.tokenReview && !config.jwks && !config.jwtIssuer;
  if (usesDevIssuer && DEV_TOKEN_DEFAULT_TTL_SECONDS <= rotationSeconds) {
    log.warn(
      { certTtlSeconds: config.certTtlSeconds, graceRatio: config.graceRatio, rotationSeconds, devTokenTtlSeconds: DEV_TOKEN_DEFAULT_TTL_SECONDS },
      "certificates rotate after the default dev token (meshkey token --ttl) has expired: mint tokens with a longer --ttl, or lower --cert-ttl / raise --grace-ratio",
    );
  }
  if (renewalWindowSeconds < 60) {
    log.warn(
      { certTtlSeconds: config.certTtlSeconds, graceRatio: config.graceRatio, renewalWindowSeconds },
      "less than a minute between renewal and expiry: a CA or verifier outage of that length lets certificates lapse",
    );
  }
}
