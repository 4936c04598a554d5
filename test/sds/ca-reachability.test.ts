// The upstream CA's reachability, as /readyz reports it for --ca-provider istio|vault:
// istio is probed with a TLS handshake against the configured root, vault with
// GET /v1/sys/health, each bounded by a timeout. Fake servers on 127.0.0.1 stand in.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as tls from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCaReachability, createIstioCaProvider, createVaultCaProvider } from "../../src/sds/index.js";

const dir = mkdtempSync(join(tmpdir(), "meshkey-ca-reach-"));
function selfSigned(name: string): { key: string; cert: string } {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.pem`);
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
    "-subj", `/CN=${name}`, "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert,
  ], { stdio: "ignore" });
  return { key: readFileSync(key, "utf8"), cert: readFileSync(cert, "utf8") };
}
const caTls = selfSigned("fake-ca");
const otherTls = selfSigned("other");

type Closable = { close(cb?: () => void): unknown; listen(port: number, host: string, cb: () => void): unknown; address(): unknown };
async function listen<T extends Closable>(server: T, port = 0): Promise<number> {
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  return (server.address() as net.AddressInfo).port;
}
const close = (s: Closable & { closeAllConnections?: () => void }) =>
  new Promise<void>((r) => {
    s.closeAllConnections?.();
    s.close(() => r());
  });

test.after(() => rmSync(dir, { recursive: true, force: true }));

test("istio: reachable while the CA completes a TLS handshake, unreachable once it is gone, reachable again when it is back", async () => {
  const server = tls.createServer({ ...caTls, ALPNProtocols: ["h2"] }, (s) => s.end());
  const port = await listen(server);
  const provider = createIstioCaProvider({ address: `127.0.0.1:${port}`, rootCertPem: caTls.cert });
  const reach = createCaReachability({ provider, intervalMs: 60_000, timeoutMs: 1_000 })!;
  try {
    assert.is(await reach.check(), true);
    assert.is(reach.reachable(), true);
    await close(server);
    assert.is(await reach.check(), false);
    assert.is(reach.reachable(), false);
    const again = tls.createServer({ ...caTls, ALPNProtocols: ["h2"] }, (s) => s.end());
    await listen(again, port);
    assert.is(await reach.check(), true);
    await close(again);
  } finally {
    reach.stop();
    provider.close();
  }
});

test("istio: a CA whose certificate does not chain to the configured root is unreachable", async () => {
  const server = tls.createServer({ ...otherTls, ALPNProtocols: ["h2"] }, (s) => s.end());
  const port = await listen(server);
  const provider = createIstioCaProvider({ address: `127.0.0.1:${port}`, rootCertPem: caTls.cert });
  const reach = createCaReachability({ provider, intervalMs: 60_000, timeoutMs: 1_000 })!;
  try {
    assert.is(await reach.check(), false);
  } finally {
    reach.stop();
    provider.close();
    await close(server);
  }
});

test("istio: a CA that accepts the connection but never answers is unreachable within the probe timeout", async () => {
  const held: net.Socket[] = [];
  const server = net.createServer((s) => held.push(s));
  const port = await listen(server);
  const provider = createIstioCaProvider({ address: `127.0.0.1:${port}`, rootCertPem: caTls.cert });
  const reach = createCaReachability({ provider, intervalMs: 60_000, timeoutMs: 300 })!;
  try {
    const t0 = Date.now();
    assert.is(await reach.check(), false);
    const ms = Date.now() - t0;
    assert.ok(ms < 1_500, `the probe took ${ms} ms`);
  } finally {
    reach.stop();
    provider.close();
    for (const s of held) s.destroy();
    await close(server);
  }
});

test("istio: the periodic probe notices the CA going away without anyone asking", async () => {
  const server = tls.createServer({ ...caTls, ALPNProtocols: ["h2"] }, (s) => s.end());
  const port = await listen(server);
  const provider = createIstioCaProvider({ address: `127.0.0.1:${port}`, rootCertPem: caTls.cert });
  const reach = createCaReachability({ provider, intervalMs: 100, timeoutMs: 500 })!;
  const until = async (want: boolean) => {
    const deadline = Date.now() + 5_000;
    while (reach.reachable() !== want && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return reach.reachable();
  };
  try {
    assert.is(await until(true), true, "reachable after the first periodic probe");
    await close(server);
    assert.is(await until(false), false, "unreachable after the CA went away");
  } finally {
    reach.stop();
    provider.close();
  }
});

const vaultCases: Array<[number, boolean, string]> = [
  [200, true, "active"],
  [429, true, "unsealed standby"],
  [473, true, "performance standby"],
  [503, false, "sealed"],
  [501, false, "not initialised"],
];
for (const [status, want, what] of vaultCases) {
  test(`vault: /v1/sys/health answering ${status} (${what}) is ${want ? "reachable" : "unreachable"}`, async () => {
    const paths: string[] = [];
    const server = http.createServer((req, res) => {
      paths.push(`${req.method} ${req.url}`);
      res.writeHead(status, { "content-type": "application/json" }).end("{}");
    });
    const port = await listen(server);
    const provider = createVaultCaProvider({ address: `http://127.0.0.1:${port}`, authPath: "auth/kubernetes/login", role: "r", signPath: "pki/sign/r" });
    const reach = createCaReachability({ provider, intervalMs: 60_000, timeoutMs: 1_000 })!;
    try {
      assert.is(await reach.check(), want);
      assert.ok(paths.every((p) => p === "GET /v1/sys/health"), paths.join(", "));
    } finally {
      reach.stop();
      await close(server);
    }
  });
}

test("vault: a Vault that is down is unreachable", async () => {
  const server = http.createServer();
  const port = await listen(server);
  await close(server);
  const provider = createVaultCaProvider({ address: `http://127.0.0.1:${port}`, authPath: "a", role: "r", signPath: "s" });
  const reach = createCaReachability({ provider, intervalMs: 60_000, timeoutMs: 1_000 })!;
  try {
    assert.is(await reach.check(), false);
  } finally {
    reach.stop();
  }
});

test.run();
