// An SDS client for proxyless Node services: it does what Envoy does with the
// node agent, so a Node workload gets its SPIFFE certificate over the Unix
// socket, in memory, and rotates it with no restart and no file written.
//
// - One stream per secret name (`default`, `ROOTCA`), as Envoy opens them.
// - The token file is re-read for every new stream (a projected token rotates).
// - Each pushed secret is loaded into a TLS context first: ACK if it loads,
//   NACK (error_detail) if it does not, and the last good context stays in use.
// - A broken stream reconnects with capped exponential backoff and jitter.
import { readFile } from "node:fs/promises";
import * as net from "node:net";
import * as tls from "node:tls";
import { X509Certificate } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, encodeBinaryHeader } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { pino } from "pino";
import { SecretDiscoveryService } from "../../gen/envoy/service/secret/v3/sds_pb.js";
import {
  DiscoveryRequestSchema,
  type DiscoveryRequest,
  type DiscoveryResponse,
} from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { SecretSchema, type Secret } from "../../gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js";
import type { DataSource } from "../../gen/envoy/config/core/v3/base_pb.js";
import { DEFAULT_SECRET_NAME, ROOT_SECRET_NAME, SDS_TOKEN_HEADER, SECRET_TYPE_URL, SPIFFE_SCHEME } from "../spiffe/index.js";

type RequestInit = Exclude<MessageInitShape<typeof DiscoveryRequestSchema>, DiscoveryRequest>;

export interface SdsClientOptions {
  /** The node agent's socket, e.g. /var/run/sds/uds_path. */
  socketPath: string;
  /** The workload's service-account token file; re-read for every new stream. */
  tokenPath: string;
  /** Peers this workload accepts: SPIFFE IDs, or a predicate. Default: any ID in the trust domain of ROOTCA. */
  allowedPeerIds?: readonly string[] | ((spiffeId: string) => boolean);
  /** Node id sent in DiscoveryRequest.node. */
  nodeId?: string;
  /** Metadata header carrying the token (default SDS_TOKEN_HEADER; Istio 1.1 spelled it SDS_TOKEN_HEADER_1_1). */
  tokenHeader?: string;
  /** Reconnect backoff: first delay and cap, in ms. */
  backoff?: { initialMs?: number; maxMs?: number };
  logger?: Logger;
}

/** The key material currently in use. */
export interface TlsMaterial {
  /** PEM chain, leaf first. */
  certChainPem: string;
  privateKeyPem: string;
  /** PEM trust bundle from ROOTCA. */
  trustedCaPem: string;
  /** This workload's SPIFFE ID (the leaf's URI SAN). */
  spiffeId: string;
  serialNumber: string;
  notAfter: Date;
}

export class SdsClientError extends Error {
  override name = "SdsClientError";
}

export interface SdsClient {
  /** Resolves once both `default` and `ROOTCA` have been received and loaded. */
  ready(timeoutMs?: number): Promise<TlsMaterial>;
  /** The current material (undefined until ready). */
  current(): TlsMaterial | undefined;
  /** The current secure context; throws before ready. */
  secureContext(): tls.SecureContext;
  /** Options to create a TLS/HTTPS server: client certificates required and checked against the allow-list. */
  serverOptions(): tls.TlsOptions;
  /** Keeps `server` on the current certificate (setSecureContext on every rotation) and enforces the allow-list. */
  attachServer(server: tls.Server): () => void;
  /** Options for tls.connect / https.request: current context, chain checked against ROOTCA, SPIFFE ID checked. */
  connectOptions(): tls.ConnectionOptions & { checkServerIdentity: typeof tls.checkServerIdentity };
  /** Called after each successful rotation (new material in use). */
  onUpdate(listener: (material: TlsMaterial) => void): () => void;
  /** Whether `spiffeId` may talk to this workload. */
  isAllowedPeer(spiffeId: string): boolean;
  close(): Promise<void>;
}

/** The URI SAN that is a SPIFFE ID, from a peer certificate as node:tls reports it. */
export function spiffeIdOfPeer(cert: { subjectaltname?: string } | undefined): string | undefined {
  const sans = cert?.subjectaltname?.split(/,\s*/) ?? [];
  const uris = sans.filter((s) => s.startsWith(`URI:${SPIFFE_SCHEME}`)).map((s) => s.slice(4));
  return uris.length === 1 ? uris[0] : undefined;
}

export function createSdsClient(options: SdsClientOptions): SdsClient {
  const log = options.logger ?? pino({ level: "silent" });
  const tokenHeader = options.tokenHeader ?? SDS_TOKEN_HEADER;
  const initialBackoff = options.backoff?.initialMs ?? 200;
  const maxBackoff = options.backoff?.maxMs ?? 10_000;
  const nodeId = options.nodeId ?? `node-sds-client~${process.pid}`;

  const sessions = new Http2SessionManager("http://localhost", { idleConnectionTimeoutMs: 60_000 }, {
    createConnection: () => net.connect(options.socketPath),
  });
  const client = createClient(
    SecretDiscoveryService,
    createGrpcTransport({ baseUrl: "http://localhost", sessionManager: sessions }),
  );

  const closed = new AbortController();
  let certificate: { chain: string; key: string } | undefined;
  let trustedCa: string | undefined;
  let material: TlsMaterial | undefined;
  let context: tls.SecureContext | undefined;
  const listeners = new Set<(m: TlsMaterial) => void>();
  const waiters = new Set<(m: TlsMaterial) => void>();

  function trustDomainOf(id: string): string | undefined {
    return /^spiffe:\/\/([^/]+)/.exec(id)?.[1];
  }

  function isAllowedPeer(spiffeId: string): boolean {
    const allow = options.allowedPeerIds;
    if (typeof allow === "function") return allow(spiffeId);
    if (allow) return allow.includes(spiffeId);
    // Default: same trust domain as our own identity.
    return material !== undefined && trustDomainOf(spiffeId) === trustDomainOf(material.spiffeId);
  }

  /** Builds the new context; throws (→ NACK) if the pair does not load. Nothing changes on failure. */
  function install(nextCert: typeof certificate, nextCa: string | undefined): void {
    if (!nextCert || nextCa === undefined) {
      certificate = nextCert;
      trustedCa = nextCa;
      return;
    }
    // A re-sent secret (a reconnect, a ROOTCA push with the same bundle) changes nothing.
    if (material && nextCert.chain === material.certChainPem && nextCert.key === material.privateKeyPem && nextCa === material.trustedCaPem) {
      return;
    }
    const ctx = tls.createSecureContext({ cert: nextCert.chain, key: nextCert.key, ca: nextCa });
    const leaf = new X509Certificate(nextCert.chain);
    const spiffeId = spiffeIdOfPeer({ subjectaltname: leaf.subjectAltName });
    if (!spiffeId) throw new SdsClientError(`the certificate has no single ${SPIFFE_SCHEME} URI SAN`);
    certificate = nextCert;
    trustedCa = nextCa;
    context = ctx;
    material = {
      certChainPem: nextCert.chain,
      privateKeyPem: nextCert.key,
      trustedCaPem: nextCa,
      spiffeId,
      serialNumber: leaf.serialNumber,
      notAfter: new Date(leaf.validTo),
    };
    const m = material;
    for (const w of waiters) w(m);
    waiters.clear();
    for (const l of listeners) {
      try {
        l(m);
      } catch (err) {
        log.error({ err }, "sds client update listener failed");
      }
    }
  }

  function applySecret(name: string, secret: Secret): void {
    if (secret.name !== name) throw new SdsClientError(`asked for secret "${name}", got "${secret.name}"`);
    if (name === ROOT_SECRET_NAME) {
      if (secret.type.case !== "validationContext") throw new SdsClientError("ROOTCA has no validation_context");
      const ca = dataSourceText(secret.type.value.trustedCa, "validation_context.trusted_ca");
      // Check the bundle parses before it replaces the old one.
      tls.createSecureContext({ ca });
      install(certificate, ca);
    } else {
      if (secret.type.case !== "tlsCertificate") throw new SdsClientError(`${name} has no tls_certificate`);
      const chain = dataSourceText(secret.type.value.certificateChain, "tls_certificate.certificate_chain");
      const key = dataSourceText(secret.type.value.privateKey, "tls_certificate.private_key");
      tls.createSecureContext({ cert: chain, key });
      install({ chain, key }, trustedCa);
    }
  }

  async function runStream(name: string): Promise<void> {
    let delay = initialBackoff;
    while (!closed.signal.aborted) {
      let token: string;
      try {
        token = (await readFile(options.tokenPath, "utf8")).trim();
      } catch (err) {
        log.warn({ name, err: (err as Error).message }, "cannot read the token file; retrying");
        await sleep(jitter(delay), closed.signal);
        delay = Math.min(maxBackoff, delay * 2);
        continue;
      }
      const requests = createWritableIterable<MessageInitShape<typeof DiscoveryRequestSchema>>();
      // Like Envoy: an ACK names the version it applied, a NACK the last one it did apply.
      let acceptedVersion = "";
      const base: RequestInit = { node: { id: nodeId }, resourceNames: [name], typeUrl: SECRET_TYPE_URL };
      // A write still pending when the stream ends is rejected: nothing to do then.
      const send = (req: RequestInit) => void requests.write(req).catch(() => {});
      send(base);
      try {
        const headers = { [tokenHeader]: encodeBinaryHeader(new TextEncoder().encode(token)) };
        for await (const res of client.streamSecrets(requests, { headers, signal: closed.signal })) {
          delay = initialBackoff;
          const reply = respond(name, res, base, acceptedVersion);
          if (!reply.errorDetail) acceptedVersion = res.versionInfo;
          send(reply);
        }
        if (!closed.signal.aborted) log.info({ name }, "sds stream ended by the server; reconnecting");
      } catch (err) {
        if (closed.signal.aborted) break;
        const ce = ConnectError.from(err);
        log.warn({ name, code: Code[ce.code], message: ce.rawMessage }, "sds stream failed; reconnecting");
      } finally {
        requests.close();
      }
      await sleep(jitter(delay), closed.signal);
      delay = Math.min(maxBackoff, delay * 2);
    }
  }

  /** ACK (loaded) or NACK (error_detail) one response. */
  function respond(
    name: string,
    res: DiscoveryResponse,
    base: RequestInit,
    acceptedVersion: string,
  ): RequestInit {
    try {
      const resource = res.resources.find((r) => {
        const s = anyUnpack(r, SecretSchema);
        return s?.name === name;
      });
      if (!resource) throw new SdsClientError(`the response has no secret named "${name}"`);
      const secret = anyUnpack(resource, SecretSchema);
      if (!secret) throw new SdsClientError(`resource is not a ${SECRET_TYPE_URL}`);
      applySecret(name, secret);
      log.debug({ name, version: res.versionInfo }, "sds secret loaded (ACK)");
      return { ...base, versionInfo: res.versionInfo, responseNonce: res.nonce };
    } catch (err) {
      const message = (err as Error).message;
      log.warn({ name, version: res.versionInfo, message }, "sds secret rejected (NACK)");
      return { ...base, versionInfo: acceptedVersion, responseNonce: res.nonce, errorDetail: { code: Code.InvalidArgument, message } };
    }
  }

  const streams = [runStream(DEFAULT_SECRET_NAME), runStream(ROOT_SECRET_NAME)];

  function requireContext(): { ctx: tls.SecureContext; m: TlsMaterial } {
    if (!context || !material) throw new SdsClientError("no certificate yet: await ready() first");
    return { ctx: context, m: material };
  }

  return {
    ready(timeoutMs = 30_000) {
      if (material) return Promise.resolve(material);
      return new Promise<TlsMaterial>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(done);
          reject(new SdsClientError(`no certificate from ${options.socketPath} within ${timeoutMs} ms`));
        }, timeoutMs);
        const done = (m: TlsMaterial) => {
          clearTimeout(timer);
          resolve(m);
        };
        waiters.add(done);
      });
    },
    current: () => material,
    secureContext: () => requireContext().ctx,
    isAllowedPeer,
    serverOptions() {
      const { m } = requireContext();
      return {
        key: m.privateKeyPem,
        cert: m.certChainPem,
        ca: m.trustedCaPem,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: "TLSv1.2",
      };
    },
    attachServer(server) {
      const update = (m: TlsMaterial) => server.setSecureContext({ key: m.privateKeyPem, cert: m.certChainPem, ca: m.trustedCaPem });
      const check = (socket: tls.TLSSocket) => {
        const peer = spiffeIdOfPeer(socket.getPeerCertificate());
        if (!peer || !isAllowedPeer(peer)) {
          log.warn({ peer }, "peer SPIFFE ID not allowed; closing the connection");
          socket.destroy();
        }
      };
      if (material) update(material);
      listeners.add(update);
      server.on("secureConnection", check);
      return () => {
        listeners.delete(update);
        server.off("secureConnection", check);
      };
    },
    connectOptions() {
      const { ctx } = requireContext();
      return {
        secureContext: ctx,
        rejectUnauthorized: true,
        // Workload certificates carry only a SPIFFE URI SAN: check that instead of a host name.
        checkServerIdentity: (_host: string, cert: tls.PeerCertificate) => {
          const peer = spiffeIdOfPeer(cert);
          if (!peer) return new SdsClientError("the server certificate has no SPIFFE ID");
          if (!isAllowedPeer(peer)) return new SdsClientError(`server identity ${peer} is not allowed`);
          return undefined;
        },
      };
    },
    onUpdate(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      closed.abort();
      sessions.abort();
      await Promise.allSettled(streams);
    },
  };
}

function dataSourceText(source: DataSource | undefined, field: string): string {
  switch (source?.specifier.case) {
    case "inlineBytes":
      return new TextDecoder().decode(source.specifier.value);
    case "inlineString":
      return source.specifier.value;
    default:
      throw new SdsClientError(`${field}: expected inline bytes or string, got ${source?.specifier.case ?? "nothing"}`);
  }
}

function jitter(ms: number): number {
  return ms * (0.8 + Math.random() * 0.4);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
