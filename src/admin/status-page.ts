// The status page (`GET /` on the admin address), rendered on the server from a
// StatusSnapshot: it reads fine without JavaScript (a <noscript> meta refresh reloads
// it), and /status.js swaps in a fresh <main> from `/?fragment=main` every few
// seconds. Every value is escaped here, once, through text(): node ids, NACK
// messages and file names come from clients and operators.
import type { StatusIdentity, StatusProxy, StatusSnapshot, StatusTypeSync } from "./status-model.js";

/** How often the page refreshes itself (JavaScript) or reloads (no JavaScript), in seconds. */
export const STATUS_REFRESH_SECONDS = { script: 2, noScript: 5 };

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/**
 * HTML-escapes a string for text and (quoted) attribute values. Control characters and
 * bidirectional overrides, which would hide or reorder what a reader sees, are shown as
 * visible `\u{…}` escapes instead.
 */
export function text(value: string | number): string {
  return String(value)
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`)
    .replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** The whole document. */
export function renderStatusPage(s: StatusSnapshot): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>meshkey status · ${text(s.trustDomain)}</title>
<link rel="stylesheet" href="/status.css">
<script src="/status.js" defer></script>
<noscript><meta http-equiv="refresh" content="${STATUS_REFRESH_SECONDS.noScript}"></noscript>
</head>
<body>
<header>
<h1>meshkey <span class="muted">status</span></h1>
<p class="live"><span id="live">reloads every ${STATUS_REFRESH_SECONDS.noScript} s</span> · <a href="/status.json">JSON</a> · <a href="/metrics">metrics</a></p>
</header>
<main id="status" data-refresh-seconds="${STATUS_REFRESH_SECONDS.script}">
${renderStatusMain(s)}
</main>
</body>
</html>
`;
}

/** The contents of <main>: what `/?fragment=main` serves to the page's script. */
export function renderStatusMain(s: StatusSnapshot): string {
  const now = Date.parse(s.generatedAt);
  return [
    `<p class="muted generated">as of <time id="generated-at" datetime="${text(s.generatedAt)}">${text(clock(s.generatedAt))}</time></p>`,
    trustSection(s, now),
    identitiesSection(s.identities, now),
    proxiesSection(s.proxies, now),
    meshSection(s, now),
    countersSection(s),
  ].join("\n");
}

function trustSection(s: StatusSnapshot, now: number): string {
  const root = s.root
    ? `<dt>root fingerprint (SHA-256)</dt><dd><code id="root-fingerprint" class="fingerprint">${text(s.root.fingerprintSha256)}</code></dd>
<dt>root subject</dt><dd>${text(s.root.subject)}</dd>
<dt>root expires</dt><dd><time id="root-not-after" datetime="${text(s.root.notAfter)}">${text(stamp(s.root.notAfter))}</time> <span class="muted">(${text(relative(s.root.notAfter, now))})</span></dd>`
    : `<dt>root</dt><dd class="muted">no CA in this process</dd>`;
  return `<section id="trust"><h2>Trust</h2>
<dl class="facts"><dt>trust domain</dt><dd id="trust-domain">${text(s.trustDomain)}</dd>
${root}</dl></section>`;
}

function identitiesSection(identities: StatusIdentity[], now: number): string {
  if (identities.length === 0) {
    return `<section id="identities"><h2>Identities</h2><p class="muted">No workload has asked for a certificate yet.</p></section>`;
  }
  // One time scale for every row: from the earliest notBefore (or now) to the latest notAfter.
  const times = identities.flatMap((i) => [i.notBefore, i.notAfter]).filter((t): t is string => t !== undefined).map(Date.parse);
  const t0 = Math.min(now, ...times);
  const t1 = Math.max(now + 1000, ...times);
  const W = 1000;
  const x = (t: number) => (((t - t0) / (t1 - t0)) * W).toFixed(1);
  const rows = identities.map((i) => {
    let bar = `<text x="4" y="14" class="tl-none">no certificate</text>`;
    if (i.notBefore && i.notAfter) {
      const nb = Date.parse(i.notBefore);
      const na = Date.parse(i.notAfter);
      const ra = i.rotateAt ? Date.parse(i.rotateAt) : na;
      bar = `<rect class="tl-life" x="${x(nb)}" y="4" width="${(Number(x(na)) - Number(x(nb))).toFixed(1)}" height="12"><title>valid ${text(stamp(i.notBefore))} → ${text(stamp(i.notAfter))}</title></rect>`
        + `<rect class="tl-renew" x="${x(ra)}" y="4" width="${Math.max(0, Number(x(na)) - Number(x(ra))).toFixed(1)}" height="12"><title>renewal window from ${text(stamp(i.rotateAt ?? i.notAfter))}</title></rect>`;
    }
    const svg = `<svg class="timeline" viewBox="0 0 ${W} 20" preserveAspectRatio="none" role="img" aria-label="certificate lifetime">${bar}<line class="tl-now" x1="${x(now)}" x2="${x(now)}" y1="0" y2="20" vector-effect="non-scaling-stroke"/></svg>`;
    const when = i.notAfter
      ? `<span class="rotation">rotates ${text(i.rotateAt ? relative(i.rotateAt, now) : "—")}</span><br><span class="muted">expires <time class="expiry" datetime="${text(i.notAfter)}">${text(stamp(i.notAfter))}</time></span>`
      : `<span class="muted">—</span>`;
    const error = i.lastError ? `<div class="error">last error ${text(relative(i.lastError.at, now))}: ${text(i.lastError.message)}</div>` : "";
    return `<tr class="identity" data-spiffe-id="${text(i.spiffeId)}" data-not-after="${text(i.notAfter ?? "")}">
<td><code>${text(i.spiffeId)}</code><br><span class="muted">serial ${text(i.serialHex ?? "—")} · ${i.streams} SDS stream${i.streams === 1 ? "" : "s"}</span>${error}</td>
<td class="bar">${svg}</td><td class="when">${when}</td></tr>`;
  });
  return `<section id="identities"><h2>Identities <span class="muted">certificate expiry</span></h2>
<table class="identities"><thead><tr><th>SPIFFE ID</th><th class="bar"><span class="axis"><span>${text(stamp(new Date(t0).toISOString()))}</span><span>${text(stamp(new Date(t1).toISOString()))}</span></span></th><th>rotation</th></tr></thead>
<tbody>${rows.join("\n")}</tbody></table>
<p class="legend muted"><span class="key tl-life"></span> valid <span class="key tl-renew"></span> renewal window (rotation is due from its start) <span class="key tl-now"></span> now</p></section>`;
}

const PROXY_TYPES = ["CDS", "LDS", "EDS", "RDS", "SDS"];

function proxiesSection(proxies: StatusProxy[] | null, now: number): string {
  if (proxies === null) return `<section id="proxies"><h2>Proxies</h2><p class="muted">This process runs no xDS server.</p></section>`;
  if (proxies.length === 0) return `<section id="proxies"><h2>Proxies</h2><p class="muted">No proxy is connected.</p></section>`;
  const rows = proxies.map((p) => {
    const cells = PROXY_TYPES.map((type) => stateCell(type, p.types.find((t) => t.type === type), now)).join("");
    const nack = p.lastNack
      ? `<div class="nack"><b>${text(p.lastNack.type)}</b> version ${text(p.lastNack.version || "—")}, ${text(relative(p.lastNack.at, now))}<pre class="nack-message">${text(p.lastNack.message)}</pre></div>`
      : `<span class="muted">none</span>`;
    return `<tr class="proxy" data-node-id="${text(p.nodeId)}"><td class="node-id"><code>${text(p.nodeId)}</code><br><span class="muted">${text(p.kind)} · ${p.streams} stream${p.streams === 1 ? "" : "s"}</span></td>${cells}<td class="last-nack">${nack}</td></tr>`;
  });
  return `<section id="proxies"><h2>Proxies <span class="muted">${proxies.length} connected</span></h2>
<table class="proxies"><thead><tr><th>node</th>${PROXY_TYPES.map((t) => `<th>${t}</th>`).join("")}<th>last NACK</th></tr></thead>
<tbody>${rows.join("\n")}</tbody></table></section>`;
}

function stateCell(type: string, t: StatusTypeSync | undefined, now: number): string {
  if (!t) return `<td class="state state-none" data-type="${type}">—</td>`;
  const cls = t.state.toLowerCase().replace(" ", "-");
  const since = t.state === "STALE" && t.sentAt ? `<br><span class="muted">for ${text(duration(now - Date.parse(t.sentAt)))}</span>` : "";
  return `<td class="state state-${cls}" data-type="${type}" title="version ${text(t.version || "—")}"><span class="badge">${t.state}</span>${since}</td>`;
}

function meshSection(s: StatusSnapshot, now: number): string {
  const m = s.mesh;
  if (!m) return `<section id="mesh"><h2>Mesh</h2><p class="muted">This process runs no xDS server.</p></section>`;
  const services = m.services.length === 0
    ? `<span class="muted">no services</span>`
    : `<ul class="services">${m.services.map((svc) => `<li><code>${text(svc.host)}</code> <span class="muted">${text(svc.ports.join(", "))} · ${svc.endpoints} endpoint${svc.endpoints === 1 ? "" : "s"}</span></li>`).join("")}</ul>`;
  const rejected = m.lastRejected
    ? `<div class="rejected"><span>rejected ${text(relative(m.lastRejected.at, now))} (<time datetime="${text(m.lastRejected.at)}">${text(stamp(m.lastRejected.at))}</time>); the last good mesh keeps serving</span><pre id="mesh-error">${text(m.lastRejected.error)}</pre></div>`
    : `<span class="muted">none</span>`;
  return `<section id="mesh"><h2>Mesh</h2>
<dl class="facts"><dt>version</dt><dd><code id="mesh-version">${text(m.version)}</code> <span class="muted">generation ${m.generation}</span></dd>
<dt>last good mesh</dt><dd>${m.file ? `<code>${text(m.file)}</code>` : `<span class="muted">built-in sample mesh</span>`}, accepted ${text(relative(m.acceptedAt, now))} (<time datetime="${text(m.acceptedAt)}">${text(stamp(m.acceptedAt))}</time>)${services}</dd>
<dt>last rejected edit</dt><dd>${rejected}</dd></dl></section>`;
}

function countersSection(s: StatusSnapshot): string {
  const { issuance, pushLatency: p } = s.counters;
  const ms = (v: number | null) => (v === null ? "—" : v < 10 ? `${v.toFixed(1)} ms` : `${Math.round(v)} ms`);
  return `<section id="counters"><h2>Counters</h2>
<dl class="facts"><dt>issuance</dt><dd><span id="issuance-rate">${issuance.perSecond.toFixed(2)}</span>/s <span class="muted">over ${issuance.windowSeconds} s · ${issuance.total} certificates since start</span></dd>
<dt>push latency</dt><dd>p50 ${ms(p.p50Ms)} · p99 ${ms(p.p99Ms)} · max ${ms(p.maxMs)} · last ${ms(p.lastMs)} <span class="muted">mesh change (or request) to ACK, ${p.count} recent pushes</span></dd></dl></section>`;
}

/** "2026-05-01 12:00:03Z" (UTC, to the second). */
function stamp(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : `${d.toISOString().slice(0, 19).replace("T", " ")}Z`;
}

function clock(iso: string): string {
  return stamp(iso).slice(11);
}

/** "in 9s", "3m 2s ago". */
function relative(iso: string, now: number): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  return t >= now ? `in ${duration(t - now)}` : `${duration(now - t)} ago`;
}

/** A duration in its two largest units: "4d 2h", "3m 12s", "9s". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const units: Array<[string, number]> = [["y", 365 * 86400], ["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
  const i = units.findIndex(([, n]) => s >= n);
  if (i === -1) return "0s";
  const [u, n] = units[i]!;
  const next = units[i + 1];
  const rest = next ? Math.floor((s % n) / next[1]) : 0;
  return `${Math.floor(s / n)}${u}${next && rest > 0 ? ` ${rest}${next[0]}` : ""}`;
}
