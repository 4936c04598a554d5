// Honest readiness during start: the admin server listens first, so that while the
// other parts start /readyz answers 503 with each check false, and 200 only once
// every part is up. The slow part here is a JWKS URL that answers only when the
// test lets it (no sleep: the test releases it after it has seen the 503).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair } from "jose";
import { startServeProcess } from "../support/serve-process.js";
import { startFlakyHttp } from "../support/flaky-http.js";

const dir = mkdtempSync(join(tmpdir(), "meshkey-start-ready-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

interface Readyz {
  status: number;
  checks: Record<string, boolean>;
}

async function readyz(admin: string): Promise<Readyz | undefined> {
  try {
    const res = await fetch(`http://${admin}/readyz`, { signal: AbortSignal.timeout(2_000) });
    return { status: res.status, checks: ((await res.json()) as { checks: Record<string, boolean> }).checks };
  } catch {
    return undefined; // not listening yet
  }
}

/** A port that was free a moment ago: the admin address must be known before serve prints it. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

test("/readyz is 503 while serve is still starting (JWKS URL slow to answer) and 200 once every part is up", async () => {
  const { publicKey } = await generateKeyPair("ES256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256" };
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let asked!: () => void;
  const jwksAsked = new Promise<void>((r) => (asked = r));
  const jwks = await startFlakyHttp((_req, res) => {
    asked();
    void released.then(() => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ keys: [jwk] }));
    });
  });
  const admin = `127.0.0.1:${await freePort()}`;
  const starting = startServeProcess([
    "--state-dir", join(dir, "state"),
    "--sds-socket", join(dir, "sds", "uds_path"),
    "--xds-listen", "127.0.0.1:0",
    "--xds-tls-listen", "127.0.0.1:0",
    "--ca-listen", "127.0.0.1:0",
    "--admin-listen", admin,
    "--jwks", `${jwks.base}/jwks.json`,
    "--jwt-issuer", "https://issuer.test",
  ]);
  // Every answer from spawn to ready, in order (a poll, not a wait: the test waits on events).
  const seen: Readyz[] = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const r = await readyz(admin);
      if (r) seen.push(r);
      await new Promise((res) => setTimeout(res, 20));
    }
  })();
  try {
    // The verifier fetches its keys after the CA is open and before SDS and ADS start:
    // the admin server, started first, answers by now.
    await jwksAsked;
    const during = await readyz(admin);
    assert.ok(during, "the admin server listens while the JWKS is being fetched");
    assert.is(during.status, 503);
    assert.equal(during.checks, { ca: true, caServer: false, sds: false, meshParsed: false, xds: false, tokenVerifier: false });
    assert.ok(seen.every((r) => r.status === 503), "never ready before the JWKS answered");
    release();
    const serve = await starting;
    try {
      const after = await readyz(admin);
      assert.is(after?.status, 200);
      assert.equal(after?.checks, { ca: true, caServer: true, sds: true, meshParsed: true, xds: true, tokenVerifier: true });
      polling = false;
      await poller;
      // 503 … then 200 …: once ready during start, never back to 503.
      const firstReady = seen.findIndex((r) => r.status === 200);
      assert.ok(seen.length > 0 && seen[0]!.status === 503, `first answers: ${JSON.stringify(seen.slice(0, 3))}`);
      if (firstReady >= 0) assert.ok(seen.slice(firstReady).every((r) => r.status === 200), "503 after 200 while starting");
    } finally {
      await serve.stop();
    }
  } finally {
    polling = false;
    release();
    await poller;
    await jwks.close();
  }
});

test.run();
