// The ADS side of `meshkey serve`: mesh (file or built-in sample) → per-node
// snapshots → ADS/CSDS server, with the mesh file watched.
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { isIP } from "node:net";
import {
  CONTROL_PLANE_IDENTITY,
  controlPlaneDnsName,
  createRenewingServerCertificate,
  readCertificateInfo,
  spiffeIdOf,
  type CertificateAuthority,
} from "../ca/index.js";
import { loadMeshFile, defaultMesh } from "../mesh/index.js";
import { peerCertificateOf } from "../net/index.js";
import { createMeshController, createSnapshotCache, createSyncTracker, startXdsServer, type PeerIdentityOf, type RunningXdsServer, type SnapshotCache, type SyncTracker } from "../xds/index.js";
import { parseHostPort, type ServeConfig } from "./serve-config.js";

export interface RunningControlPlane {
  readonly server: RunningXdsServer;
  /** ADS over mTLS (--xds-tls-listen), when the CA runs in this process. */
  readonly tlsServer: RunningXdsServer | undefined;
  syncStatus(): unknown;
  configDump(nodeId: string): unknown;
  close(): Promise<void>;
}

/**
 * @param sdsSocketPath the socket the pushed SDS config sources point at (the
 *   agent's actual socket when co-hosted, else the configured one).
 * @param ca the in-process CA: then ADS is also served over mTLS on
 *   --xds-tls-listen, with a server certificate for the control plane's identity.
 */
export async function startControlPlane(
  config: ServeConfig,
  sdsSocketPath: string,
  log: Logger,
  registry: Registry,
  ca?: CertificateAuthority,
): Promise<RunningControlPlane> {
  // A bad mesh file at start is an error: there is no last good config to keep serving.
  const mesh = config.mesh ? await loadMeshFile(config.mesh) : defaultMesh;
  const cache = createSnapshotCache();
  const controller = createMeshController({
    cache,
    mesh,
    ...(config.mesh ? { meshFile: config.mesh } : {}),
    translate: { trustDomain: config.trustDomain, sdsSocketPath, tokenPath: config.tokenPath },
    logger: log,
    registry,
  });
  // One tracker for both ports: /debug/syncz sees every node, whichever port it came on.
  const tracker = createSyncTracker(registry);
  let server: RunningXdsServer | undefined;
  let tls: { server: RunningXdsServer; stop(): void } | undefined;
  try {
    server = await startXdsServer({ listen: parseHostPort(config.xdsListen, "--xds-listen"), cache, logger: log, registry, tracker });
    if (ca) tls = await startTlsXdsServer(config, ca, cache, log, registry, tracker);
  } catch (err) {
    controller.close();
    await server?.close();
    throw err;
  }
  const plain = server;
  return {
    server: plain,
    tlsServer: tls?.server,
    syncStatus: () => plain.syncStatus(),
    configDump: (nodeId) => controller.configDump(nodeId),
    async close() {
      controller.close();
      tls?.stop();
      await Promise.all([plain.close(), tls?.server.close()]);
    },
  };
}

/** The SPIFFE ID of a call's verified client certificate (its one spiffe:// URI SAN). */
export const peerSpiffeId: PeerIdentityOf = (ctx) => {
  const cert = peerCertificateOf(ctx);
  if (!cert) return undefined;
  const uris = readCertificateInfo(cert.toString()).uriSans.filter((u) => u.startsWith("spiffe://"));
  return uris.length === 1 ? uris[0] : undefined;
};

/**
 * ADS over mTLS, as istiod's 15012: the server certificate is the control plane's
 * identity (URI spiffe://<td>/ns/istio-system/sa/istiod, DNS istiod.istio-system.svc),
 * issued by the in-process CA and renewed at half-life; clients must present a
 * certificate that chains to the root, whose identity is the node's.
 */
async function startTlsXdsServer(
  config: ServeConfig,
  ca: CertificateAuthority,
  cache: SnapshotCache,
  log: Logger,
  registry: Registry,
  tracker: SyncTracker,
): Promise<{ server: RunningXdsServer; stop(): void }> {
  const listen = parseHostPort(config.xdsTlsListen, "--xds-tls-listen");
  const ips = isIP(listen.host) && listen.host !== "0.0.0.0" && listen.host !== "::" ? [listen.host] : [];
  let server: RunningXdsServer | undefined;
  const cert = createRenewingServerCertificate({
    ca,
    sans: {
      uris: [spiffeIdOf(ca.trustDomain, CONTROL_PLANE_IDENTITY)],
      dnsNames: [controlPlaneDnsName(CONTROL_PLANE_IDENTITY.namespace)],
      ips,
    },
    onRenew: (c) => server?.setTlsCertificate({ key: c.privateKeyPem, cert: c.certChainPem }),
    name: "ADS mTLS server",
    logger: log,
  });
  try {
    server = await startXdsServer({
      listen,
      cache,
      logger: log,
      registry,
      tracker,
      tls: { key: cert.current.privateKeyPem, cert: cert.current.certChainPem, ca: ca.rootCertPem, requestCert: true },
      peerIdentity: peerSpiffeId,
    });
  } catch (err) {
    cert.stop();
    throw err;
  }
  return { server, stop: () => cert.stop() };
}
