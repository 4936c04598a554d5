// The composition root of `meshkey serve`: builds each enabled part from the
// configuration, wires their debug and readiness into the admin server, and
// shuts them down in order. Parts meet only through their index.ts APIs.
import { mkdir, readFile, access, constants as fsConstants } from "node:fs/promises";
import { createHash, X509Certificate } from "node:crypto";
import { dirname, join, resolve } from "node:path";
import type { Logger } from "pino";
import { Registry, collectDefaultMetrics } from "prom-client";
import {
  canIssueServerCertificates,
  CONTROL_PLANE_IDENTITY,
  createJwtAuthenticator,
  createTokenReviewAuthenticator,
  openCertificateAuthority,
  openDevTokenIssuer,
  startCaServer,
  type CertificateAuthority,
  type DevTokenIssuer,
  type JwtAuthenticatorOptions,
  type TokenAuthenticator,
} from "../ca/index.js";
import {
  createBuiltinCaProvider,
  createIstioCaProvider,
  createSecretCache,
  createVaultCaProvider,
  startSdsServer,
  type CaProvider,
  type RunningSdsServer,
  type SecretCache,
} from "../sds/index.js";
import { startAdminServer, DebugPageError, type DebugPage, type RunningAdminServer } from "../admin/index.js";
import type { RunningGrpcServer } from "../net/index.js";
import { DEFAULT_SDS_SOCKET, parseHostPort, type ServeConfig } from "./serve-config.js";
import { startControlPlane, type RunningControlPlane } from "./control-plane.js";

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
  collectDefaultMetrics({ register: registry, prefix: "meshkey_process_" });
  const stateDir = resolve(config.stateDir);
  await prepareStateDir(stateDir);

  const stops: Array<() => Promise<void> | void> = [];
  const ready: Record<string, boolean> = {};
  const debugPages: Record<string, DebugPage> = {};
  const addresses: { sds?: string; xds?: string; xdsTls?: string; ca?: string; admin: string } = { admin: "" };
  let ca: CertificateAuthority | undefined;
  let devIssuer: DevTokenIssuer | undefined;
  let secretCache: SecretCache | undefined;

  try {
    // The CA holds its root in the state dir; an agent using the builtin provider needs it in process.
    const needLocalCa = config.ca || (config.sds && config.caProvider === "builtin");
    if (needLocalCa) {
      ready.ca = false;
      ca = await openCertificateAuthority({
        stateDir,
        trustDomain: config.trustDomain,
        keyType: config.keyType,
        pluginCertsDir: config.pluginCerts,
        certTtlSeconds: config.certTtlSeconds,
        maxCertTtlSeconds: config.maxCertTtlSeconds,
      });
      ready.ca = true;
    }

    const authenticator = await createAuthenticator(config, stateDir, (issuer) => (devIssuer = issuer));

    if (config.ca && ca) {
      ready.caServer = false;
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
    if (config.sds) {
      ready.sds = false;
      const caProvider = await createCaProvider(config, ca, authenticator);
      const localCa = ca;
      secretCache = createSecretCache({
        caProvider,
        trustDomain: config.trustDomain,
        keyType: config.keyType,
        graceRatio: config.graceRatio,
        certTtlSeconds: config.certTtlSeconds,
        ...(localCa ? { rootCertPem: () => localCa.rootCertPem } : {}),
        logger: log.child({ part: "sds-cache" }),
        registry,
      });
      const cache = secretCache;
      stops.push(() => cache.close());
      sdsSocketPath = await chooseSocketPath(config, stateDir, log);
      const sds: RunningSdsServer = await startSdsServer({
        socketPath: sdsSocketPath,
        cache,
        authenticator,
        logger: log.child({ part: "sds" }),
        registry,
      });
      stops.push(() => sds.close());
      addresses.sds = sds.address;
      debugPages.sds = () => sds.debug();
      ready.sds = true;
    }

    let controlPlane: RunningControlPlane | undefined;
    if (config.xds) {
      ready.xds = false;
      // With the CA in this process, ADS is served over mTLS too (--xds-tls-listen).
      const tlsCa = config.ca && canIssueServerCertificates(ca) ? ca : undefined;
      controlPlane = await startControlPlane(config, sdsSocketPath, log.child({ part: "xds" }), registry, tlsCa);
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

    const admin: RunningAdminServer = await startAdminServer({
      listen: parseHostPort(config.adminListen, "--admin-listen"),
      registry,
      readiness: () => ({ ready: Object.values(ready).every(Boolean), checks: { ...ready } }),
      debugPages,
    });
    addresses.admin = admin.address;

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

async function prepareStateDir(stateDir: string): Promise<void> {
  try {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await access(stateDir, fsConstants.W_OK | fsConstants.R_OK);
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
    jwks = { keys: dev.jwks };
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
 * create: then fall back to <state-dir>/uds_path and say so. A path the user chose
 * is used as given (errors are reported, never worked around).
 */
async function chooseSocketPath(config: ServeConfig, stateDir: string, log: Logger): Promise<string> {
  if (config.sdsSocketExplicit || config.sdsSocket !== DEFAULT_SDS_SOCKET) return config.sdsSocket;
  try {
    await mkdir(dirname(config.sdsSocket), { recursive: true, mode: 0o755 });
    await access(dirname(config.sdsSocket), fsConstants.W_OK);
    return config.sdsSocket;
  } catch (err) {
    const fallback = join(stateDir, "uds_path");
    log.warn(
      { wanted: config.sdsSocket, fallback, reason: (err as Error).message },
      "cannot use the default SDS socket directory; falling back to the state dir",
    );
    return fallback;
  }
}

/** The short human summary printed once everything listens. */
export function describeRunningMeshkey(m: RunningMeshkey): string {
  const lines = ["meshkey is ready", `  trust domain   ${m.config.trustDomain}`];
  if (m.rootCertPem) {
    const fp = createHash("sha256").update(new X509Certificate(m.rootCertPem).raw).digest("hex");
    lines.push(`  root           sha256:${fp.match(/../g)!.join(":")}`);
  }
  if (m.addresses.ca) lines.push(`  CA             ${m.addresses.ca}  (IstioCertificateService, TLS)`);
  if (m.addresses.sds) lines.push(`  SDS            ${m.addresses.sds}`);
  if (m.addresses.xds) lines.push(`  ADS            ${m.addresses.xds}  (plaintext)`);
  if (m.addresses.xdsTls) lines.push(`  ADS-mTLS       ${m.addresses.xdsTls}  (server spiffe://${m.config.trustDomain}/ns/${CONTROL_PLANE_IDENTITY.namespace}/sa/${CONTROL_PLANE_IDENTITY.serviceAccount}, client certificate required)`);
  lines.push(`  admin          http://${m.addresses.admin}  (/readyz /metrics /debug/sds /debug/syncz)`);
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
