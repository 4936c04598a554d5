// The status page and its JSON form over real HTTP: what a client sent (node ids, NACK
// messages) and what an operator wrote (mesh errors, file names) is shown as text, the
// page runs only its own script under a strict CSP, and /status.json is the same data.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Registry } from "prom-client";
import { escapeHtml, renderStatusPage, startAdminServer, STATUS_PAGE_CSP, type StatusSnapshot } from "../../src/admin/index.js";

const EVIL = `<script>alert(1)</script>"><img src=x onerror=alert(2)>`;

function snapshot(overrides: Partial<StatusSnapshot> = {}): StatusSnapshot {
  const now = Date.parse("2030-01-01T00:00:00Z");
  const iso = (s: number) => new Date(now + s * 1000).toISOString();
  return {
    generatedAt: iso(0),
    trustDomain: "cluster.local",
    root: { fingerprintSha256: "AB:CD:EF", notAfter: iso(86400 * 3650), subject: "O=meshkey, CN=root" },
    identities: [{ spiffeId: "spiffe://cluster.local/ns/foo/sa/sleep", serialHex: "0a1b", notBefore: iso(-10), notAfter: iso(10), rotateAt: iso(0), streams: 1 }],
    proxies: [
      {
        nodeId: `sidecar~127.0.0.2~${EVIL}.foo~foo.svc.cluster.local`,
        kind: "sidecar",
        streams: 1,
        types: [
          { type: "CDS", state: "SYNCED", version: "v1" },
          { type: "LDS", state: "NACKED", version: "v2" },
          { type: "EDS", state: "STALE", version: "v3", sentAt: iso(-65) },
        ],
        lastNack: { type: "LDS", version: "v2", message: `cannot bind ${EVIL}`, at: iso(-5) },
      },
    ],
    mesh: {
      version: "0123456789ab",
      generation: 2,
      file: `/tmp/${EVIL}/mesh.yaml`,
      acceptedAt: iso(-60),
      services: [{ host: "httpbin.bar.svc.cluster.local", ports: ["8000/HTTP"], endpoints: 1 }],
      lastRejected: { at: iso(-30), error: `services[0].name: ${EVIL}` },
    },
    counters: { issuance: { total: 3, perSecond: 0.05, windowSeconds: 60 }, pushLatency: { count: 4, p50Ms: 12, p99Ms: 40, maxMs: 40, lastMs: 8 } },
    ...overrides,
  };
}

async function withStatusAdmin(s: StatusSnapshot, fn: (base: string) => Promise<void>): Promise<void> {
  const admin = await startAdminServer({ listen: { host: "127.0.0.1", port: 0 }, registry: new Registry(), readiness: () => ({ ready: true, checks: {} }), status: () => s });
  try {
    await fn(`http://${admin.address}`);
  } finally {
    await admin.close();
  }
}

test("escapeHtml turns markup into text and quotes into entities", () => {
  assert.is(escapeHtml(`<a href="x" title='y'>&</a>`), "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;");
});

test("control characters and bidi overrides in a node id are shown as visible escapes", () => {
  assert.is(escapeHtml("node\u202e~evil\u0007\n"), "node\\u{202e}~evil\\u{7}\n");
});

test("a node id, a NACK message, a mesh error and a file name holding markup appear as text, never as markup", () => {
  const html = renderStatusPage(snapshot());
  const escaped = escapeHtml(EVIL);
  // The only script element is the page's own file; no injected element or attribute.
  assert.equal(html.match(/<script\b[^>]*>/g), [`<script src="/status.js" defer>`]);
  assert.not.match(html, /<img/);
  // Each value is one escaped run of text; the attribute holding the node id stays one quoted value.
  const s = snapshot();
  const nodeId = s.proxies![0]!.nodeId;
  assert.ok(html.includes(`data-node-id="${escapeHtml(nodeId)}"`), "node id attribute");
  assert.ok(html.includes(`<code>${escapeHtml(nodeId)}</code>`), "node id text");
  assert.ok(html.includes(`<pre class="nack-message">cannot bind ${escaped}</pre>`), "NACK message");
  assert.ok(html.includes(`<pre id="mesh-error">services[0].name: ${escaped}</pre>`), "mesh error");
  assert.ok(html.includes(`<code>/tmp/${escaped}/mesh.yaml</code>`), "mesh file");
});

test("the page shows each type's sync state, how long a STALE type has waited, and the last NACK", () => {
  const html = renderStatusPage(snapshot());
  assert.match(html, /data-type="CDS"[^>]*><span class="badge">SYNCED</);
  assert.match(html, /data-type="LDS"[^>]*><span class="badge">NACKED</);
  assert.match(html, /data-type="EDS"[^>]*><span class="badge">STALE<\/span><br><span class="muted">for 1m 5s</);
  assert.match(html, /<pre class="nack-message">cannot bind &lt;script&gt;/);
});

test("GET / is HTML under a CSP that runs only the page's own script file, with nosniff", async () => {
  await withStatusAdmin(snapshot(), async (base) => {
    const r = await fetch(`${base}/`);
    assert.is(r.status, 200);
    assert.match(r.headers.get("content-type") ?? "", /^text\/html/);
    assert.is(r.headers.get("x-content-type-options"), "nosniff");
    const csp = r.headers.get("content-security-policy") ?? "";
    assert.is(csp, STATUS_PAGE_CSP);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.not.match(csp, /unsafe-inline|unsafe-eval/);
    assert.match(await r.text(), /<noscript><meta http-equiv="refresh"/);

    const js = await fetch(`${base}/status.js`);
    assert.is(js.status, 200);
    assert.match(js.headers.get("content-type") ?? "", /^text\/javascript/);
    assert.is(js.headers.get("x-content-type-options"), "nosniff");
    assert.match(await js.text(), /fragment=main/);
    const css = await fetch(`${base}/status.css`);
    assert.match(css.headers.get("content-type") ?? "", /^text\/css/);
  });
});

test("/?fragment=main serves only the page's main section, for the live refresh", async () => {
  await withStatusAdmin(snapshot(), async (base) => {
    const body = await (await fetch(`${base}/?fragment=main`)).text();
    assert.not.match(body, /<html|<head|<script/);
    assert.match(body, /<section id="proxies">/);
  });
});

test("/status.json is the same data as the page, as JSON with nosniff and no raw '<'", async () => {
  const s = snapshot();
  await withStatusAdmin(s, async (base) => {
    const r = await fetch(`${base}/status.json`);
    assert.is(r.status, 200);
    assert.is(r.headers.get("content-type"), "application/json");
    assert.is(r.headers.get("x-content-type-options"), "nosniff");
    const raw = await r.text();
    assert.not.match(raw, /</);
    assert.equal(JSON.parse(raw), s);
  });
});

test("an identity without a certificate, no proxies and no CA render as such", () => {
  const html = renderStatusPage(snapshot({ root: null, proxies: [], identities: [{ spiffeId: "spiffe://cluster.local/ns/a/sa/b", streams: 0 }] }));
  assert.match(html, /no CA in this process/);
  assert.match(html, /No proxy is connected/);
  assert.match(html, /no certificate/);
});

test.run();
