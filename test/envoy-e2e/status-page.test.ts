// The admin status page (`GET /`) in headless Chromium against a running meshkey with a
// real Envoy sidecar: it lists the sidecar as SYNCED, refreshes itself, works without
// JavaScript, shows a NACK with Envoy's own message, follows a certificate rotation, and
// shows a hostile node id as text. A screenshot is saved under the OS temp dir.
import { spawnSync } from "node:child_process";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Page } from "playwright-core";
import * as assert from "uvu/assert";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import type { DiscoveryRequestSchema } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { chromiumSuite, startChromium, type RunningChromium } from "../support/chromium.js";
import { envoySuite, freePort } from "../support/envoy.js";
import { createMeshWorld, waitForSidecarSynced, type MeshWorld, type Sidecar, type Workload } from "../support/mesh-world.js";

const test = chromiumSuite("status page (real Envoy, headless Chromium)", envoySuite);

/** Short certificates (renewed at half life), so a rotation happens within the test. */
const CERT_TTL_SECONDS = 12;
const CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const OUTPUT_DIR = join(tmpdir(), "meshkey-test-output", "status-page");

let world: MeshWorld;
let sleep: Sidecar;
let serving: Workload[];
let chrome: RunningChromium;

const SLEEP_SPIFFE_ID = "spiffe://cluster.local/ns/foo/sa/sleep";
const quoted = (s: string) => JSON.stringify(s); // a CSS string literal

/** Polls `check` every 100 ms until it returns a value (bounded); fails with the last value seen. */
async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last !== undefined ? ` (last: ${String(last)})` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface OpenPage {
  page: Page;
  /** alert()/confirm() dialogs the page opened (a script that ran). */
  dialogs: string[];
  /** Console errors, e.g. Content-Security-Policy violations. */
  consoleErrors: string[];
  close(): Promise<void>;
}

async function openStatusPage(options: { javaScriptEnabled?: boolean } = {}): Promise<OpenPage> {
  const context = await chrome.browser.newContext({ javaScriptEnabled: options.javaScriptEnabled ?? true, viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  const dialogs: string[] = [];
  const consoleErrors: string[] = [];
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(e.message));
  const res = await page.goto(`http://${world.serve.admin}/`).catch((err: Error) => err);
  if (res instanceof Error || res?.status() !== 200) {
    await context.close();
    assert.unreachable(`GET / on the admin address: ${res instanceof Error ? res.message : `HTTP ${res?.status()}`}`);
  }
  return { page, dialogs, consoleErrors, close: () => context.close() };
}

const proxyRow = (page: Page, nodeId: string) => page.locator(`tr.proxy[data-node-id=${quoted(nodeId)}]`);
const stateOf = async (page: Page, nodeId: string, type: string) =>
  (await proxyRow(page, nodeId).locator(`td[data-type=${quoted(type)}]`).textContent({ timeout: 1_000 }))?.trim();

test.before(async () => {
  world = await createMeshWorld({ subnet: 91, serveArgs: ["--cert-ttl", `${CERT_TTL_SECONDS}s`] });
  const sleepW = await world.workload({ name: "sleep", namespace: "foo", port: 80 });
  const httpbinW = await world.workload({ name: "httpbin", namespace: "bar" });
  serving = [sleepW, httpbinW];
  world.writeMesh(serving);
  sleep = await world.startSidecar(sleepW);
  await waitForSidecarSynced(sleep.envoy);
  chrome = await startChromium();
});

test.after(async () => {
  await chrome?.close();
  await world?.close();
});

test("the page lists the Envoy sidecar as SYNCED for CDS, LDS, EDS, RDS and SDS, with the root's openssl fingerprint", async () => {
  const { page, close } = await openStatusPage();
  try {
    const nodeId = sleep.workload.nodeId;
    for (const type of ["CDS", "LDS", "EDS", "RDS", "SDS"]) {
      await eventually(`${type} SYNCED on the page`, async () => ((await stateOf(page, nodeId, type)) === "SYNCED" ? true : undefined));
    }
    assert.is(await page.locator("#trust-domain").textContent(), "cluster.local");
    const openssl = spawnSync("openssl", ["x509", "-in", join(world.dir, "state", "root-cert.pem"), "-noout", "-fingerprint", "-sha256"], { encoding: "utf8" });
    assert.is(openssl.status, 0, openssl.stderr);
    assert.is(await page.locator("#root-fingerprint").textContent(), /Fingerprint=(\S+)/.exec(openssl.stdout)![1]);
  } finally {
    await close();
  }
});

test("the page refreshes itself with its own script, under its CSP, without a violation", async () => {
  const { page, consoleErrors, close } = await openStatusPage();
  try {
    const first = await page.locator("#generated-at").getAttribute("datetime");
    await eventually("a newer snapshot swapped in by /status.js", async () => {
      const now = await page.locator("#generated-at").getAttribute("datetime", { timeout: 1_000 });
      return now !== null && first !== null && Date.parse(now) > Date.parse(first) ? now : undefined;
    });
    assert.match((await page.locator("#live").textContent()) ?? "", /^live/);
    assert.equal(consoleErrors, []);
  } finally {
    await close();
  }
});

test("without JavaScript the page still lists the sidecar as SYNCED and reloads itself", async () => {
  const { page, close } = await openStatusPage({ javaScriptEnabled: false });
  try {
    assert.is(await stateOf(page, sleep.workload.nodeId, "LDS"), "SYNCED");
    assert.is(await page.locator('noscript meta[http-equiv="refresh"], meta[http-equiv="refresh"]').count(), 1);
  } finally {
    await close();
  }
});

test("a listener Envoy refuses shows as NACKED with Envoy's own message", async () => {
  // A port another process holds on the sidecar's pod IP: the mesh is valid, but the
  // outbound listener for the new service's port cannot bind there.
  const podIp = sleep.workload.podIp;
  const taken = await freePort(podIp);
  const blocker: Server = createServer();
  await new Promise<void>((r) => blocker.listen(taken, podIp, r));
  const { page, close } = await openStatusPage();
  try {
    const rejectedBefore = await sleep.envoy.stat("listener_manager.lds.update_rejected");
    const blocked = { ...serving[1]!, name: "blocked", serviceAccount: "blocked", port: taken };
    world.writeMesh([...serving, blocked]);
    await sleep.envoy.waitForStat("listener_manager.lds.update_rejected", (v) => v > rejectedBefore);
    const envoyError = await sleep.envoy.waitFor("the rejected listener's error_state in /config_dump", async () => {
      const dump = await sleep.envoy.configDump("?resource=dynamic_listeners");
      return (dump.configs as Array<{ error_state?: { details?: string } }>).find((l) => l.error_state?.details)?.error_state?.details;
    });
    assert.match(envoyError, String(taken));

    const nodeId = sleep.workload.nodeId;
    await eventually("LDS NACKED on the page", async () => ((await stateOf(page, nodeId, "LDS")) === "NACKED" ? true : undefined));
    const row = proxyRow(page, nodeId);
    const message = await row.locator(".nack-message").textContent();
    assert.ok(message?.includes(envoyError), `page: ${message} — Envoy: ${envoyError}`);
    assert.is((await row.locator(".last-nack b").textContent())?.trim(), "LDS");
  } finally {
    await close();
    await new Promise((r) => blocker.close(r));
    // Back to a mesh Envoy accepts, for the tests that follow.
    const acked = await sleep.envoy.stat("listener_manager.lds.update_success");
    world.writeMesh(serving);
    await sleep.envoy.waitForStat("listener_manager.lds.update_success", (v) => v > acked);
  }
});

test("a mesh edit meshkey refuses is shown as the last rejected edit with its error, and the mesh version stays", async () => {
  const { page, close } = await openStatusPage();
  try {
    const version = await page.locator("#mesh-version").textContent();
    // Written whole and renamed into place, as an editor does.
    writeFileSync(`${world.meshFile}.tmp`, "services:\n  - name: [not, a, name]\n");
    renameSync(`${world.meshFile}.tmp`, world.meshFile);
    const error = await eventually("the rejected edit on the page", async () => {
      const t = await page.locator("#mesh-error").textContent({ timeout: 1_000 });
      return t?.includes("services[0]") ? t : undefined;
    });
    assert.match(error, "mesh.yaml");
    assert.is(await page.locator("#mesh-version").textContent(), version, "the last good mesh keeps serving");
  } finally {
    await close();
    world.writeMesh(serving);
  }
});

test("an identity's certificate expiry on the page advances after a rotation, to the certificate Envoy holds", async () => {
  const { page, close } = await openStatusPage();
  try {
    const row = page.locator(`tr.identity[data-spiffe-id=${quoted(SLEEP_SPIFFE_ID)}]`);
    const first = await eventually("the identity's expiry on the page", async () => (await row.getAttribute("data-not-after", { timeout: 1_000 })) || undefined);
    // Renewed at half of a 12 s life: the live page shows the next certificate within the bound.
    const next = await eventually(
      "a later expiry on the page",
      async () => {
        const v = await row.getAttribute("data-not-after", { timeout: 1_000 });
        return v && Date.parse(v) > Date.parse(first) ? v : undefined;
      },
      CERT_TTL_SECONDS * 2_000,
    );
    assert.match((await row.locator(".rotation").textContent()) ?? "", /^rotates (in|\d)/);
    // The judge: Envoy's /certs has the certificate with that expiry.
    await sleep.envoy.waitFor("Envoy to hold the certificate the page shows", async () => {
      const certs = await sleep.envoy.certs();
      return certs.certificates
        .flatMap((c) => c.cert_chain)
        .some((c) => c.subject_alt_names.some((s) => s.uri === SLEEP_SPIFFE_ID) && Math.abs(Date.parse(c.expiration_time) - Date.parse(next)) < 1_000);
    });
  } finally {
    await close();
  }
});

test("a node id holding <script> is shown as text and runs nothing", async () => {
  const evilId = `sidecar~127.91.250.1~<script>alert(1)</script><img src=x onerror="alert(2)">.foo~foo.svc.cluster.local`;
  const { page, dialogs, consoleErrors, close } = await openStatusPage();
  // The hostile node: our own ADS client, ACKing what it gets.
  const ads = createClient(AggregatedDiscoveryService, createGrpcTransport({ baseUrl: `http://${world.serve.xds}` }));
  const input = createWritableIterable<MessageInitShape<typeof DiscoveryRequestSchema>>();
  const abort = new AbortController();
  const reading = (async () => {
    try {
      for await (const r of ads.streamAggregatedResources(input, { signal: abort.signal })) {
        await input.write({ typeUrl: CDS, versionInfo: r.versionInfo, responseNonce: r.nonce });
      }
    } catch {
      // the stream ends when the test aborts it
    }
  })();
  try {
    await input.write({ node: { id: evilId, cluster: "evil.foo" }, typeUrl: CDS });
    const row = proxyRow(page, evilId);
    await eventually("the hostile node's row on the page", async () => ((await row.count()) === 1 ? true : undefined));
    assert.is(await row.locator("td.node-id code").textContent(), evilId, "the node id is visible as text");
    assert.is(await page.locator("main script, main img").count(), 0, "no element came from the node id");
    assert.is(await page.locator("script").count(), 1, "the page's own script only");
    assert.equal(dialogs, [], "no alert() ran");
    assert.equal(consoleErrors, [], "no CSP violation: nothing tried to run");

    mkdirSync(OUTPUT_DIR, { recursive: true });
    const shot = join(OUTPUT_DIR, "status-page.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`status page screenshot: ${shot}`);
  } finally {
    await close();
    input.close();
    abort.abort();
    await reading;
  }
});

test.run();
