// The status page's data: the root fingerprint as openssl prints it, each type's sync
// state from what the node was sent and said back, push latency from the mesh change
// to the ACK, and the issuance rate.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { createRateMeter, createStatusData, proxyStatus, trackPushLatency } from "../../src/cli/status-data.js";
import { createSyncTracker, TypeUrl } from "../../src/xds/index.js";

test("the root's fingerprint is the one `openssl x509 -fingerprint -sha256` prints, and its expiry is the certificate's", async () => {
  const dir = mkdtempSync(join(tmpdir(), "meshkey-status-"));
  try {
    const key = join(dir, "k.pem");
    const cert = join(dir, "c.pem");
    const gen = spawnSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/O=test/CN=root"], { encoding: "utf8" });
    assert.is(gen.status, 0, gen.stderr);
    const openssl = spawnSync("openssl", ["x509", "-in", cert, "-noout", "-fingerprint", "-sha256", "-enddate"], { encoding: "utf8" });
    const fingerprint = /sha256 Fingerprint=([0-9A-F:]+)/i.exec(openssl.stdout)![1];
    const notAfter = new Date(/notAfter=(.+)/.exec(openssl.stdout)![1]!).toISOString();
    const pem = readFileSync(cert, "utf8");
    const s = await createStatusData({ trustDomain: "example.org", registry: new Registry(), rootCertPem: () => pem })();
    assert.is(s.root?.fingerprintSha256, fingerprint);
    assert.match(s.root!.fingerprintSha256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.is(s.root?.notAfter, notAfter);
    assert.is(s.trustDomain, "example.org");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const node = "sidecar~127.0.0.2~sleep-1.foo~foo.svc.cluster.local";
const states = (tracker: ReturnType<typeof createSyncTracker>, current: Record<string, string> = {}) =>
  proxyStatus({ sync: tracker.node(node)!, kind: "sidecar", spiffeId: undefined, currentVersion: (u) => current[u] }, undefined);

test("a type is SYNCED once its version is ACKed, STALE while it waits, NACKED when the version sent was refused", () => {
  const tracker = createSyncTracker(new Registry());
  tracker.streamOpened(node, "sotw");
  tracker.sent(node, TypeUrl.Cluster, "c1", "1", 2);
  tracker.acked(node, TypeUrl.Cluster, "c1");
  tracker.sent(node, TypeUrl.Listener, "l1", "2", 2);
  tracker.sent(node, TypeUrl.Route, "r1", "3", 1);
  tracker.nacked(node, TypeUrl.Route, "r1", "3", "bad route <x>");
  const p = states(tracker, { [TypeUrl.Cluster]: "c1" });
  assert.equal(p.types.map((t) => `${t.type}=${t.state}`), ["CDS=SYNCED", "LDS=STALE", "RDS=NACKED"]);
  assert.ok(p.types.find((t) => t.type === "LDS")!.sentAt, "a STALE type says since when");
  assert.equal({ ...p.lastNack, at: "" }, { type: "RDS", version: "r1", message: "bad route <x>", at: "" });
});

test("an ACKed version that is no longer the node's current one is STALE", () => {
  const tracker = createSyncTracker(new Registry());
  tracker.streamOpened(node, "sotw");
  tracker.sent(node, TypeUrl.Cluster, "c1", "1", 2);
  tracker.acked(node, TypeUrl.Cluster, "c1");
  assert.is(states(tracker, { [TypeUrl.Cluster]: "c2" }).types[0]!.state, "STALE");
});

test("push latency runs from the mesh change to the ACK; a NACK gives no sample", () => {
  let t = 1_000;
  let meshChangedAt: number | undefined;
  const registry = new Registry();
  const { tracker, stats } = trackPushLatency(createSyncTracker(registry), { meshChangedAt: () => meshChangedAt, registry, now: () => t });
  tracker.streamOpened(node, "sotw");
  // First subscription: from the send.
  tracker.sent(node, TypeUrl.Cluster, "c1", "1", 1);
  t += 7;
  tracker.acked(node, TypeUrl.Cluster, "c1");
  assert.is(stats().lastMs, 7);
  // A mesh change after that ACK: from the change, through translation and send.
  t += 100;
  meshChangedAt = t;
  t += 30;
  tracker.sent(node, TypeUrl.Cluster, "c2", "2", 1);
  t += 20;
  tracker.acked(node, TypeUrl.Cluster, "c2");
  assert.is(stats().lastMs, 50);
  // A refused version: no sample.
  t += 10;
  tracker.sent(node, TypeUrl.Cluster, "c3", "3", 1);
  tracker.nacked(node, TypeUrl.Cluster, "c3", "3", "no");
  assert.equal(stats(), { count: 2, p50Ms: 7, p99Ms: 50, maxMs: 50, lastMs: 50 });
  assert.ok(registry.getSingleMetric("meshkey_xds_push_latency_seconds"), "the histogram is on the registry");
});

test("the issuance rate is the counter's increase over the window", () => {
  let t = 0;
  const rate = createRateMeter(10_000, () => t);
  t = 5_000;
  assert.equal(rate(10), { perSecond: 2, windowSeconds: 5 });
  t = 20_000;
  // The baseline is the last sample at or before the window's start (t=5s, 10).
  assert.equal(rate(40), { perSecond: 2, windowSeconds: 15 });
  t = 40_000;
  assert.equal(rate(40), { perSecond: 0, windowSeconds: 20 });
});

test.run();
