// Test harness for the SDS node agent: a real @grpc/grpc-js client over the Unix
// socket (protobuf-es serializers), a JWT signer whose tokens can be made wrong in
// every way, and an agent wired to the real CA of src/ca.
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT, exportJWK, generateKeyPair, type JWTPayload } from "jose";
import { Registry } from "prom-client";
import {
  DeltaDiscoveryRequestSchema,
  DeltaDiscoveryResponseSchema,
  DiscoveryRequestSchema,
  DiscoveryResponseSchema,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryRequest,
  type DiscoveryResponse,
} from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { SecretSchema, type Secret } from "../../gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js";
import {
  createJwtAuthenticator,
  openCertificateAuthority,
  type CertificateAuthority,
  type TokenAuthenticator,
} from "../../src/ca/index.js";
import {
  createBuiltinCaProvider,
  createSecretCache,
  startSdsServer,
  type CaProvider,
  type RunningSdsServer,
  type SecretCache,
  type SecretCacheOptions,
} from "../../src/sds/index.js";
import { SECRET_TYPE_URL } from "../../src/spiffe/index.js";

export { SECRET_TYPE_URL };

const SERVICE = "/envoy.service.secret.v3.SecretDiscoveryService";

function ser<T>(schema: Parameters<typeof toBinary>[0]) {
  return (m: T) => Buffer.from(toBinary(schema, m as never));
}

const methods = {
  streamSecrets: {
    path: `${SERVICE}/StreamSecrets`,
    requestStream: true,
    responseStream: true,
    requestSerialize: ser<DiscoveryRequest>(DiscoveryRequestSchema),
    requestDeserialize: (b: Buffer) => fromBinary(DiscoveryRequestSchema, b),
    responseSerialize: ser<DiscoveryResponse>(DiscoveryResponseSchema),
    responseDeserialize: (b: Buffer) => fromBinary(DiscoveryResponseSchema, b),
  },
  deltaSecrets: {
    path: `${SERVICE}/DeltaSecrets`,
    requestStream: true,
    responseStream: true,
    requestSerialize: ser<DeltaDiscoveryRequest>(DeltaDiscoveryRequestSchema),
    requestDeserialize: (b: Buffer) => fromBinary(DeltaDiscoveryRequestSchema, b),
    responseSerialize: ser<DeltaDiscoveryResponse>(DeltaDiscoveryResponseSchema),
    responseDeserialize: (b: Buffer) => fromBinary(DeltaDiscoveryResponseSchema, b),
  },
  fetchSecrets: {
    path: `${SERVICE}/FetchSecrets`,
    requestStream: false,
    responseStream: false,
    requestSerialize: ser<DiscoveryRequest>(DiscoveryRequestSchema),
    requestDeserialize: (b: Buffer) => fromBinary(DiscoveryRequestSchema, b),
    responseSerialize: ser<DiscoveryResponse>(DiscoveryResponseSchema),
    responseDeserialize: (b: Buffer) => fromBinary(DiscoveryResponseSchema, b),
  },
} satisfies grpc.ServiceDefinition;

const SdsClient = grpc.makeGenericClientConstructor(methods, "SecretDiscoveryService");

export type Credential =
  | { kind: "header"; token: string; header?: string }
  | { kind: "bearer"; token: string }
  | { kind: "none" };

export function metadataFor(cred: Credential): grpc.Metadata {
  const md = new grpc.Metadata();
  if (cred.kind === "header") md.add(cred.header ?? "istio_sds_credentials_header-bin", Buffer.from(cred.token));
  if (cred.kind === "bearer") md.add("authorization", `Bearer ${cred.token}`);
  return md;
}

export interface StreamStatus {
  code: number;
  details: string;
}

/** A bidi call with a message queue: next() waits for the next message, status resolves when it ends. */
export class Conversation<Req, Res> {
  readonly received: Res[] = [];
  private waiters: Array<(m: Res | undefined) => void> = [];
  private ended = false;
  readonly status: Promise<StreamStatus>;

  constructor(readonly call: grpc.ClientDuplexStream<Req, Res>) {
    call.on("data", (m: Res) => {
      const w = this.waiters.shift();
      if (w) w(m);
      else this.received.push(m);
    });
    this.status = new Promise((resolve) => {
      call.on("status", (s: grpc.StatusObject) => {
        this.ended = true;
        for (const w of this.waiters.splice(0)) w(undefined);
        resolve({ code: s.code, details: s.details });
      });
    });
    call.on("error", () => {}); // reported through status
  }

  send(m: Req): void {
    this.call.write(m);
  }

  /** The next message; fails after timeoutMs, or if the call ends first. */
  async next(timeoutMs = 5_000): Promise<Res> {
    const m = await this.nextOrUndefined(timeoutMs);
    if (m === undefined) throw new Error(`no message within ${timeoutMs} ms (call ended: ${this.ended})`);
    return m;
  }

  /** Resolves undefined if nothing arrives within ms. */
  nextOrUndefined(ms: number): Promise<Res | undefined> {
    const queued = this.received.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const w = (m: Res | undefined) => {
        clearTimeout(t);
        resolve(m);
      };
      const t = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(undefined);
      }, ms);
      this.waiters.push(w);
    });
  }

  close(): void {
    this.call.cancel();
  }
}

export class SdsTestClient {
  private readonly client: grpc.Client & { [k in keyof typeof methods]: (...a: unknown[]) => unknown };
  constructor(socketPath: string) {
    this.client = new SdsClient(`unix://${socketPath}`, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": 16 * 1024 * 1024,
    }) as never;
  }

  stream(cred: Credential): Conversation<DiscoveryRequest, DiscoveryResponse> {
    return new Conversation(this.client.streamSecrets(metadataFor(cred)) as grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>);
  }

  delta(cred: Credential): Conversation<DeltaDiscoveryRequest, DeltaDiscoveryResponse> {
    return new Conversation(
      this.client.deltaSecrets(metadataFor(cred)) as grpc.ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>,
    );
  }

  fetch(cred: Credential, names: string[], timeoutMs = 10_000): Promise<DiscoveryResponse> {
    return new Promise((resolve, reject) => {
      this.client.fetchSecrets(
        sotwRequest(names),
        metadataFor(cred),
        { deadline: Date.now() + timeoutMs },
        (err: grpc.ServiceError | null, res: DiscoveryResponse) => (err ? reject(err) : resolve(res)),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

export function sotwRequest(names: string[], extra: MessageInitShape<typeof DiscoveryRequestSchema> = {}): DiscoveryRequest {
  const init: MessageInitShape<typeof DiscoveryRequestSchema> = {
    typeUrl: SECRET_TYPE_URL,
    resourceNames: names,
    node: { id: "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local" },
  };
  return create(DiscoveryRequestSchema, Object.assign(init, extra));
}

/** The ACK (or, with error, the NACK) of a response. */
export function ackOf(res: DiscoveryResponse, names: string[], error?: string): DiscoveryRequest {
  return sotwRequest(names, {
    versionInfo: res.versionInfo,
    responseNonce: res.nonce,
    ...(error ? { errorDetail: { code: 3, message: error } } : {}),
  });
}

export function deltaRequest(init: MessageInitShape<typeof DeltaDiscoveryRequestSchema>): DeltaDiscoveryRequest {
  const base: MessageInitShape<typeof DeltaDiscoveryRequestSchema> = { typeUrl: SECRET_TYPE_URL };
  return create(DeltaDiscoveryRequestSchema, Object.assign(base, init));
}

export function secretsOf(res: { resources: Array<{ typeUrl: string; value: Uint8Array }> } | DiscoveryResponse): Secret[] {
  return res.resources.map((a) => {
    const s = anyUnpack(a as never, SecretSchema);
    if (!s) throw new Error(`resource is not a Secret: ${(a as { typeUrl: string }).typeUrl}`);
    return s;
  });
}

const dec = new TextDecoder();
/** Chain and key PEMs of a tls_certificate Secret. */
export function tlsOf(s: Secret): { chainPem: string; keyPem: string } {
  if (s.type.case !== "tlsCertificate") throw new Error(`secret ${s.name} is ${s.type.case}, not tlsCertificate`);
  const c = s.type.value.certificateChain?.specifier;
  const k = s.type.value.privateKey?.specifier;
  if (c?.case !== "inlineBytes" || k?.case !== "inlineBytes") throw new Error("expected inline bytes");
  return { chainPem: dec.decode(c.value), keyPem: dec.decode(k.value) };
}

export function trustedCaOf(s: Secret): string {
  if (s.type.case !== "validationContext") throw new Error(`secret ${s.name} is ${s.type.case}, not validationContext`);
  const t = s.type.value.trustedCa?.specifier;
  if (t?.case !== "inlineBytes") throw new Error("expected inline bytes");
  return dec.decode(t.value);
}

/** PEM blocks of a bundle, in order. */
export function pemBlocks(pem: string): string[] {
  return pem.match(/-----BEGIN [A-Z ]+-----[\s\S]+?-----END [A-Z ]+-----/g) ?? [];
}

export function openssl(args: string[], input?: string): string {
  return execFileSync("openssl", args, { input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
}

// --- tokens ---------------------------------------------------------------

export const TEST_ISSUER = "https://issuer.meshkey.test";

export interface TokenSigner {
  authenticator: TokenAuthenticator;
  mint(ns: string, sa: string, opts?: { ttlSeconds?: number; audience?: string; expOffsetSeconds?: number }): Promise<string>;
  /** Signed by a key that is not in the authenticator's JWKS. */
  mintWithOtherKey(ns: string, sa: string): Promise<string>;
  /** An unsigned token (alg none). */
  unsigned(ns: string, sa: string): string;
}

export async function createTokenSigner(opts: { leewaySeconds?: number } = {}): Promise<TokenSigner> {
  const { privateKey, publicKey } = await generateKeyPair("ES256");
  const other = await generateKeyPair("ES256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
  const authenticator = createJwtAuthenticator({ jwks: { keys: { keys: [jwk] } }, issuer: TEST_ISSUER, leewaySeconds: opts.leewaySeconds ?? 0 });
  const claims = (ns: string, sa: string): JWTPayload => ({
    "kubernetes.io": { namespace: ns, serviceaccount: { name: sa, uid: "u" } },
  });
  const sign = (ns: string, sa: string, key: Parameters<SignJWT["sign"]>[0], opts: { ttlSeconds?: number; audience?: string; expOffsetSeconds?: number } = {}) => {
    const now = Math.floor(Date.now() / 1000);
    const exp = opts.expOffsetSeconds !== undefined ? now + opts.expOffsetSeconds : now + (opts.ttlSeconds ?? 3600);
    return new SignJWT(claims(ns, sa))
      .setProtectedHeader({ alg: "ES256", kid: "k1", typ: "JWT" })
      .setIssuer(TEST_ISSUER)
      .setSubject(`system:serviceaccount:${ns}:${sa}`)
      .setAudience(opts.audience ?? "istio-ca")
      .setIssuedAt(Math.min(now, exp - 1))
      .setExpirationTime(exp)
      .sign(key);
  };
  return {
    authenticator,
    mint: (ns, sa, opts) => sign(ns, sa, privateKey, opts),
    mintWithOtherKey: (ns, sa) => sign(ns, sa, other.privateKey),
    unsigned(ns, sa) {
      const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
      const now = Math.floor(Date.now() / 1000);
      return `${b64({ alg: "none", typ: "JWT" })}.${b64({ ...claims(ns, sa), iss: TEST_ISSUER, aud: "istio-ca", sub: `system:serviceaccount:${ns}:${sa}`, exp: now + 3600 })}.`;
    },
  };
}

// --- an agent over the real CA --------------------------------------------

export interface AgentEnv {
  dir: string;
  socketPath: string;
  ca: CertificateAuthority;
  signer: TokenSigner;
  cache: SecretCache;
  server: RunningSdsServer;
  client: SdsTestClient;
  registry: Registry;
  /** Counts of sign() calls that reached the provider, and a switch to make it fail. */
  provider: CountingProvider;
  rootPemFile: string;
  close(): Promise<void>;
}

export interface CountingProvider extends CaProvider {
  calls: number;
  /** When set, sign() throws this error instead of signing. */
  failWith: Error | undefined;
}

export function countingProvider(inner: CaProvider): CountingProvider {
  const p: CountingProvider = {
    calls: 0,
    failWith: undefined,
    async sign(csr, token, ttl) {
      p.calls++;
      if (p.failWith) throw p.failWith;
      return inner.sign(csr, token, ttl);
    },
  };
  return p;
}

export async function startAgent(
  opts: { cache?: Partial<SecretCacheOptions>; certTtlSeconds?: number; signer?: TokenSigner } = {},
): Promise<AgentEnv> {
  const dir = mkdtempSync(join(tmpdir(), "meshkey-sds-"));
  const signer = opts.signer ?? (await createTokenSigner());
  const ca = await openCertificateAuthority({ stateDir: join(dir, "ca"), trustDomain: "cluster.local" });
  const provider = countingProvider(createBuiltinCaProvider({ ca, authenticator: signer.authenticator }));
  const registry = new Registry();
  const cache = createSecretCache({
    caProvider: provider,
    trustDomain: "cluster.local",
    rootCertPem: () => ca.rootCertPem,
    certTtlSeconds: opts.certTtlSeconds ?? 3600,
    registry,
    retry: { initialMs: 50, maxMs: 400 },
    ...opts.cache,
  });
  const socketPath = join(dir, "sds", "uds_path");
  const server = await startSdsServer({ socketPath, cache, authenticator: signer.authenticator, registry });
  const client = new SdsTestClient(socketPath);
  const rootPemFile = join(dir, "root.pem");
  writeFileSync(rootPemFile, ca.rootCertPem);
  return {
    dir,
    socketPath,
    ca,
    signer,
    cache,
    server,
    client,
    registry,
    provider,
    rootPemFile,
    async close() {
      client.close();
      await server.close(500);
      cache.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  if (!m) return 0;
  let sum = 0;
  for (const v of m.values) {
    if (Object.entries(labels).every(([k, val]) => String(v.labels[k]) === val)) sum += v.value;
  }
  return sum;
}
