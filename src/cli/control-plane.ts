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
  type CertificateAuthority,
} from "../ca/index.js";
import { SPIFFE_SCHEME, spiffeIdOf } from "../spiffe/index.js";
import { loadMeshSource, defaultMesh, nodeKind, sidecarIdentity, type MeshModel } from "../mesh/index.js";
import { peerCertificateOf } from "../net/index.js";
import { createMeshController, createSnapshotCache, createSyncTracker, startXdsServer, type MeshHistory, type PeerIdentityOf, type RunningXdsServer, type SnapshotCache, type SyncTracker } from "../xds/index.js";
import type { StatusCounters } from "../admin/index.js";
import { parseHostPort, type ServeConfig } from "./serve-config.js";
import { trackPushLatency, type ControlPlaneNode } from "./status-data.js";

/** How long shutdown waits for in-flight ADS pushes to be acknowledged. */
const SHUTDOWN_SETTLE_MS = 2_000;

export interface RunningControlPlane {
  readonly server: RunningXdsServer;
  /** ADS over mTLS (--xds-tls-listen), when the CA runs in this process. */
  readonly tlsServer: RunningXdsServer | undefined;
  syncStatus(): unknown;
  configDump(nodeId: string): unknown;
  /** Read-only views for the status page. */
  status: {
    nodes(): ControlPlaneNode[];
    mesh(): MeshModel;
    meshHistory(): MeshHistory;
    pushLatency(): StatusCounters["pushLatency"];
  };
  close(): Promise<void>;
}

/**
 * @param sdsSocketPath the socket the pushed SDS config sources point at (the
 *   agent's actual socket when co-hosted, else the configured one).
 * @param ca the in-process CA: then ADS is also served over mTLS on
 *   --xds-tls-listen, with a server certificate for the control plane's identity.
 * @param events.onMeshParsed called once the mesh (file or built-in sample) is loaded,
 *   before the ADS ports listen (readiness reports the two apart).
 */
export async function startControlPlane(
  config: ServeConfig,
  sdsSocketPath: string,
  log: Logger,
  registry: Registry,
  ca?: CertificateAuthority,
  events: { onMeshParsed?(): void } = {},
): Promise<RunningControlPlane> {
  // A bad mesh file at start is an error: there is no last good config to keep serving.
  // One read, parsed off the main thread; the watch starts from the bytes read.
  const source = config.mesh ? await loadMeshSource(config.mesh, { maxBytes: config.maxMeshBytes }) : undefined;
  const cache = createSnapshotCache();
  const controller = createMeshController({
    cache,
    mesh: source?.model ?? defaultMesh,
    ...(source ? { meshSource: source } : {}),
    maxMeshBytes: config.maxMeshBytes,
    guardMassRemoval: config.guardMassRemoval,
    translate: { trustDomain: config.trustDomain, sdsSocketPath, tokenPath: config.tokenPath },
    logger: log,
    registry,
  });
  events.onMeshParsed?.();
  // One tracker for both ports: /debug/syncz sees every node, whichever port it came on.
  // Each ACK is timed from the mesh change (or request) that caused its push.
  const latency = trackPushLatency(createSyncTracker(registry), { meshChangedAt: () => Date.parse(controller.history().lastGood.at), registry });
  const tracker = latency.tracker;
  let server: RunningXdsServer | undefined;
  let tls: { server: RunningXdsServer; stop(): void } | undefined;
  try {
    const plainListen = parseHostPort(config.xdsListen, "--xds-listen");
    server = await startXdsServer({ listen: plainListen, cache, logger: log, registry, tracker });
    // Plaintext ADS has no authentication: it is meant for Envoys on this node only.
    if (!isLoopbackHost(plainListen.host)) {
      log.warn(
        { xdsListen: config.xdsListen },
        "plaintext ADS (--xds-listen) is bound to a non-loopback address: any host that reaches it can read every node's configuration; bind it to 127.0.0.1 and give remote Envoys the mTLS port (--xds-tls-listen)",
      );
    }
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
    status: {
      nodes() {
        const connected = new Map(cache.connectedNodes().map((n) => [n.id, n]));
        return tracker.status().map((sync) => {
          const node = connected.get(sync.nodeId) ?? { id: sync.nodeId };
          const kind = nodeKind(node);
          const id = kind === "sidecar" ? sidecarIdentity(node) : undefined;
          return {
            sync,
            kind,
            spiffeId: id?.namespace && id.serviceAccount ? spiffeIdOf(config.trustDomain, { namespace: id.namespace, serviceAccount: id.serviceAccount }) : undefined,
            currentVersion: (typeUrl: string) => cache.getSnapshot(sync.nodeId)?.get(typeUrl)?.version,
          };
        });
      },
      mesh: () => controller.mesh(),
      meshHistory: () => controller.history(),
      pushLatency: () => latency.stats(),
    },
    async close() {
      // No new mesh from here on; let the pushes already on the wire finish (Envoy asks for
      // the new clusters' endpoints and the new listeners' routes in a second round trip),
      // bounded, so that no Envoy is left with half a change.
      controller.close();
      const servers = [plain, ...(tls ? [tls.server] : [])];
      const settled = await Promise.all(servers.map((s) => s.settle(SHUTDOWN_SETTLE_MS)));
      if (settled.includes(false)) {
        log.warn({ streams: servers.reduce((n, s) => n + s.unsettledStreams(), 0), waitedMs: SHUTDOWN_SETTLE_MS }, "shutting down with ADS pushes not yet acknowledged");
      }
      tls?.stop();
      await Promise.all([plain.close(), tls?.server.close()]);
    },
  };
}

/** The SPIFFE ID of a call's verified client certificate (its one spiffe:// URI SAN). */
export const peerSpiffeId: PeerIdentityOf = (ctx) => {
  const cert = peerCertificateOf(ctx);
  if (!cert) return undefined;
  const uris = readCertificateInfo(cert.toString()).uriSans.filter((u) => u.startsWith(SPIFFE_SCHEME));
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

/** 127.0.0.0/8, ::1 and localhost: reachable only from this host. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h);
}
