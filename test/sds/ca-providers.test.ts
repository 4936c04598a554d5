// The remote CA providers against real peers: the istio provider against meshkey's
// own CA server (IstioCertificateService over TLS), the vault provider against a
// node:http server that implements Vault's Kubernetes login and PKI sign endpoints.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { openCertificateAuthority, startCaServer, type CertificateAuthority } from "../../src/ca/index.js";
import {
  CaProviderError,
  createIstioCaProvider,
  createSecretCache,
  createVaultCaProvider,
  startSdsServer,
  type CaProvider,
} from "../../src/sds/index.js";
import {
  SdsTestClient,
  createTokenSigner,
  openssl,
  pemBlocks,
  secretsOf,
  sotwRequest,
  tlsOf,
  type TokenSigner,
} from "./sds-harness.js";

let dir: string;
let ca: CertificateAuthority;
let signer: TokenSigner;
test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), "meshkey-prov-"));
  ca = await openCertificateAuthority({ stateDir: join(dir, "ca"), trustDomain: "cluster.local" });
  signer = await createTokenSigner();
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs an SDS agent on `provider` and returns the chain it serves for foo/httpbin. */
async function chainThroughAgent(provider: CaProvider, name: string): Promise<string> {
  const cache = createSecretCache({ caProvider: provider, trustDomain: "cluster.local", certTtlSeconds: 600 });
  const socketPath = join(dir, name, "uds_path");
  const server = await startSdsServer({ socketPath, cache, authenticator: signer.authenticator });
  const client = new SdsTestClient(socketPath);
  try {
    const s = client.stream({ kind: "header", token: await signer.mint("foo", "httpbin") });
    s.send(sotwRequest(["default"]));
    const r = await s.next(10_000);
    s.close();
    return tlsOf(secretsOf(r)[0]!).chainPem;
  } finally {
    client.close();
    await server.close(200);
    cache.close();
  }
}

function verifyChain(chainPem: string): void {
  const blocks = pemBlocks(chainPem);
  const root = join(dir, "root.pem");
  const leaf = join(dir, "leaf.pem");
  writeFileSync(root, ca.rootCertPem);
  writeFileSync(leaf, blocks[0]!);
  assert.match(openssl(["verify", "-CAfile", root, leaf]), /OK/);
  assert.match(openssl(["x509", "-noout", "-ext", "subjectAltName"], blocks[0]!), "URI:spiffe://cluster.local/ns/foo/sa/httpbin");
}

async function rejection(p: Promise<unknown>): Promise<CaProviderError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.instance(e, CaProviderError);
  return e as CaProviderError;
}

// --- istio -----------------------------------------------------------------

test("istio provider: the agent gets its certificate from meshkey's CA server over TLS", async () => {
  const caServer = await startCaServer({ ca, authenticator: signer.authenticator, listen: { host: "127.0.0.1", port: 0 } });
  const provider = createIstioCaProvider({ address: `127.0.0.1:${caServer.port}`, rootCertPem: ca.rootCertPem });
  try {
    verifyChain(await chainThroughAgent(provider, "istio"));
    // With a DNS name from the server certificate, as in a cluster.
    const byName = createIstioCaProvider({
      address: `127.0.0.1:${caServer.port}`,
      rootCertPem: ca.rootCertPem,
      serverName: "istiod.istio-system.svc",
    });
    const csr = (await import("../../src/ca/index.js")).createKeyAndCsr;
    const chain = await byName.sign((await csr("ec-p256")).csrPem, await signer.mint("foo", "httpbin"), 600);
    assert.ok(chain.length >= 2);
    byName.close();
  } finally {
    provider.close();
    await caServer.close(200);
  }
});

test("istio provider: a token the CA rejects is unauthenticated (fail fast), a CA that is down is unavailable (retry)", async () => {
  const { createKeyAndCsr } = await import("../../src/ca/index.js");
  const { csrPem } = await createKeyAndCsr("ec-p256");
  const caServer = await startCaServer({ ca, authenticator: signer.authenticator, listen: { host: "127.0.0.1", port: 0 } });
  const port = caServer.port;
  const provider = createIstioCaProvider({ address: `127.0.0.1:${port}`, rootCertPem: ca.rootCertPem, timeoutMs: 2_000 });
  try {
    const bad = await rejection(provider.sign(csrPem, await signer.mintWithOtherKey("foo", "httpbin"), 600));
    assert.is(bad.kind, "unauthenticated");
  } finally {
    provider.close();
    await caServer.close(200);
  }
  const down = createIstioCaProvider({ address: `127.0.0.1:${port}`, rootCertPem: ca.rootCertPem, timeoutMs: 2_000 });
  try {
    const err = await rejection(down.sign(csrPem, await signer.mint("foo", "httpbin"), 600));
    assert.is(err.kind, "unavailable");
  } finally {
    down.close();
  }
});

// --- vault -----------------------------------------------------------------

interface VaultFake {
  server: Server;
  address: string;
  seen: Array<{ path: string; body: Record<string, unknown>; token: string | undefined }>;
  failNext: number | undefined;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>;
}

/** Vault's Kubernetes auth login and PKI sign, faithfully enough: role, jwt and token are checked. */
async function startVaultFake(tls?: { key: string; cert: string }): Promise<VaultFake> {
  const tokens = new Map<string, { namespace: string; serviceAccount: string }>();
  const fake: VaultFake = { server: undefined as never, address: "", seen: [], failNext: undefined };
  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    const body = await readJson(req);
    const token = req.headers["x-vault-token"] as string | undefined;
    fake.seen.push({ path: req.url ?? "", body, token });
    if (fake.failNext !== undefined) {
      const status = fake.failNext;
      fake.failNext = undefined;
      return reply(status, { errors: ["Vault is sealed"] });
    }
    if (req.method !== "PUT" && req.method !== "POST") return reply(405, { errors: ["unsupported operation"] });
    if (req.url === "/v1/auth/kubernetes/login") {
      if (body.role !== "istio") return reply(400, { errors: [`invalid role name "${String(body.role)}"`] });
      try {
        const caller = await signer.authenticator.authenticate(String(body.jwt ?? ""));
        const clientToken = `hvs.${randomBytes(12).toString("hex")}`;
        tokens.set(clientToken, caller);
        return reply(200, {
          request_id: "r",
          auth: { client_token: clientToken, accessor: "a", policies: ["default", "istio"], lease_duration: 3600, renewable: true },
        });
      } catch {
        return reply(403, { errors: ["permission denied"] });
      }
    }
    if (req.url === "/v1/pki/sign/istio") {
      const who = token ? tokens.get(token) : undefined;
      if (!who) return reply(403, { errors: ["permission denied"] });
      if (body.format !== "pem") return reply(400, { errors: ["unsupported format"] });
      const ttl = /^(\d+)s$/.exec(String(body.ttl ?? ""));
      if (!ttl) return reply(400, { errors: ["invalid ttl"] });
      try {
        const chain = await ca.sign(String(body.csr), who, Number(ttl[1]));
        return reply(200, {
          data: { certificate: chain[0], issuing_ca: chain[1], ca_chain: chain.slice(1), serial_number: "00:01" },
        });
      } catch (err) {
        return reply(400, { errors: [(err as Error).message] });
      }
    }
    return reply(404, { errors: [] });
  };
  fake.server = tls ? createHttpsServer(tls, handler) : createServer(handler);
  await new Promise<void>((r) => fake.server.listen(0, "127.0.0.1", r));
  fake.address = `${tls ? "https" : "http"}://127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
  return fake;
}

function vaultProvider(address: string, role = "istio"): CaProvider {
  return createVaultCaProvider({ address, authPath: "auth/kubernetes/login", role, signPath: "pki/sign/istio" });
}

test("vault provider: Kubernetes login then PKI sign, with the token header, ttl and format", async () => {
  const vault = await startVaultFake();
  try {
    verifyChain(await chainThroughAgent(vaultProvider(vault.address), "vault"));
    const [login, sign] = vault.seen;
    assert.is(login!.path, "/v1/auth/kubernetes/login");
    assert.is(login!.body.role, "istio");
    assert.type(login!.body.jwt, "string");
    assert.is(sign!.path, "/v1/pki/sign/istio");
    assert.match(String(sign!.token), /^hvs\./);
    assert.equal({ ttl: sign!.body.ttl, format: sign!.body.format }, { ttl: "600s", format: "pem" });
    assert.match(String(sign!.body.csr), /BEGIN CERTIFICATE REQUEST/);
  } finally {
    vault.server.close();
  }
});

test("vault provider: 4xx fails fast, 5xx and connection refused are transient", async () => {
  const { createKeyAndCsr } = await import("../../src/ca/index.js");
  const { csrPem } = await createKeyAndCsr("ec-p256");
  const token = await signer.mint("foo", "httpbin");
  const vault = await startVaultFake();
  try {
    const wrongRole = await rejection(vaultProvider(vault.address, "nope").sign(csrPem, token, 600));
    assert.is(wrongRole.kind, "invalid");
    assert.match(wrongRole.message, /invalid role name/);
    const badJwt = await rejection(vaultProvider(vault.address).sign(csrPem, await signer.mintWithOtherKey("foo", "httpbin"), 600));
    assert.is(badJwt.kind, "unauthenticated");
    vault.failNext = 503;
    const sealed = await rejection(vaultProvider(vault.address).sign(csrPem, token, 600));
    assert.is(sealed.kind, "unavailable");
    assert.match(sealed.message, /503/);
    // And once it answers again, the same provider works.
    const chain = await vaultProvider(vault.address).sign(csrPem, token, 600);
    assert.ok(chain.length >= 2);
  } finally {
    await new Promise((r) => vault.server.close(r));
  }
  const refused = await rejection(vaultProvider(vault.address).sign(csrPem, token, 600));
  assert.is(refused.kind, "unavailable");
});

test("vault provider over https trusts the given CA PEM, and refuses a server it cannot verify", async () => {
  // Vault's own TLS certificate: self-signed for 127.0.0.1 (its key is Vault's, not a workload's).
  const keyFile = join(dir, "vault-key.pem");
  const certFile = join(dir, "vault-cert.pem");
  openssl([
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
    "-subj", "/CN=vault", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", keyFile, "-out", certFile,
  ]);
  const tls = { key: readFileSync(keyFile, "utf8"), cert: readFileSync(certFile, "utf8") };
  const vault = await startVaultFake(tls);
  try {
    const { createKeyAndCsr } = await import("../../src/ca/index.js");
    const { csrPem } = await createKeyAndCsr("ec-p256");
    const token = await signer.mint("foo", "httpbin");
    const opts = { address: vault.address, authPath: "auth/kubernetes/login", role: "istio", signPath: "pki/sign/istio" };
    const chain = await createVaultCaProvider({ ...opts, caPem: tls.cert }).sign(csrPem, token, 600);
    assert.ok(chain.length >= 2);
    const untrusted = await rejection(createVaultCaProvider(opts).sign(csrPem, token, 600));
    assert.is(untrusted.kind, "unavailable");
    assert.match(untrusted.message, /certificate/i);
  } finally {
    await new Promise((r) => vault.server.close(r));
  }
});

test.run();
