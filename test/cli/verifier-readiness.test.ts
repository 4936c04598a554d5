// Token life vs rotation defaults, and /readyz telling the truth about the token verifier.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair } from "jose";
import { isolatedServeArgs, startServeProcess } from "../support/serve-process.js";
import { startFlakyHttp } from "../support/flaky-http.js";

const dir = mkdtempSync(join(tmpdir(), "meshkey-verifier-ready-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

async function readyz(admin: string): Promise<{ status: number; body: { checks: Record<string, boolean> } }> {
  const res = await fetch(`http://${admin}/readyz`, { signal: AbortSignal.timeout(2_000) });
  return { status: res.status, body: (await res.json()) as { checks: Record<string, boolean> } };
}

async function waitFor<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("a default `meshkey token` outlives the default rotation period (24 h cert × 0.5 grace = 12 h)", () => {
  const r = spawnSync(process.execPath, ["bin/meshkey.js", "token", "-n", "foo", "-s", "httpbin", "--state-dir", join(dir, "t")], { encoding: "utf8", timeout: 30_000 });
  assert.is(r.status, 0, r.stderr);
  const claims = JSON.parse(Buffer.from(r.stdout.trim().split(".")[1]!, "base64url").toString()) as { exp: number; iat: number };
  assert.ok(claims.exp - claims.iat > 12 * 3600, `token lives ${claims.exp - claims.iat} s`);
});

test("serve warns at start when certificates would rotate after the default dev token expired", async () => {
  const d = join(dir, "warn");
  const serve = await startServeProcess([...isolatedServeArgs(d), "--no-xds", "--cert-ttl", "72h"]);
  try {
    const logs = serve.stdout() + serve.stderr();
    assert.match(logs, /certificates rotate after the default dev token .* has expired/);
  } finally {
    await serve.stop();
  }
});

test("/readyz is 503 (tokenVerifier false) while the JWKS URL is down at start, and 200 once it answers", async () => {
  const { publicKey } = await generateKeyPair("ES256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256" };
  const jwks = await startFlakyHttp((_req, res) => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await jwks.down();
  const d = join(dir, "ready");
  const serve = await startServeProcess([...isolatedServeArgs(d), "--no-xds", "--jwks", `${jwks.base}/jwks.json`, "--jwt-issuer", "https://issuer.test"]);
  try {
    const before = await readyz(serve.admin);
    assert.is(before.status, 503);
    assert.is(before.body.checks.tokenVerifier, false);
    await jwks.up();
    const after = await waitFor("readyz 200", async () => {
      const r = await readyz(serve.admin);
      return r.status === 200 ? r : undefined;
    });
    assert.is(after.body.checks.tokenVerifier, true);
  } finally {
    await serve.stop();
    await jwks.close();
  }
});

test.run();
