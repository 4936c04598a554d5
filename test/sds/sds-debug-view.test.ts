// What /debug/sds keeps, alone and on a manual clock: every table is bounded (the sample
// of unknown names, the last NACK per identity), names are truncated, and the "unknown
// secret name" warning is rate-limited per window with a count of what it suppressed.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Writable } from "node:stream";
import { pino } from "pino";
import { Registry } from "prom-client";
import { createSdsDebugView } from "../../src/sds/sds-debug-view.js";
import { createSdsMetrics } from "../../src/sds/sds-metrics.js";
import type { IdentityDebug, SecretCacheDebug } from "../../src/sds/index.js";
import {
  MAX_UNKNOWN_NAME_SAMPLE,
  UNKNOWN_NAME_LOGS_PER_WINDOW,
  UNKNOWN_NAME_LOG_WINDOW_MS,
  UNKNOWN_NAME_SAMPLE_CHARS,
} from "../../src/sds/stream-subscriptions.js";
import { createFakeClock } from "../support/fake-clock.js";
import { metricValue } from "./sds-harness.js";

const ID = (sa: string) => `spiffe://cluster.local/ns/foo/sa/${sa}`;

function setup(opts: { maxNackRecords?: number } = {}) {
  const clock = createFakeClock();
  const warnings: Array<{ name: string; suppressed?: number }> = [];
  const log = pino({ level: "info" }, new Writable({ write: (c, _e, cb) => (warnings.push(JSON.parse(String(c))), cb()) }));
  const registry = new Registry();
  const view = createSdsDebugView({ log, metrics: createSdsMetrics(registry), now: clock.now, ...opts });
  return { clock, warnings, registry, view };
}

const identity = (spiffeId: string): IdentityDebug => ({
  spiffeId,
  serialHex: undefined,
  notBefore: undefined,
  notAfter: undefined,
  rotateAt: undefined,
  watchers: 0,
  issuing: false,
  tokenExpiresAt: undefined,
  lastError: undefined,
  csrCount: 0,
});
const cacheDebug = (spiffeIds: string[]): SecretCacheDebug => ({ trustDomain: "cluster.local", rootFingerprint: "ab:cd", identities: spiffeIds.map(identity) });

test(`the unknown-name sample keeps the ${MAX_UNKNOWN_NAME_SAMPLE} newest names; the total counts all`, async () => {
  const { view, registry } = setup();
  const n = MAX_UNKNOWN_NAME_SAMPLE + 44;
  for (let i = 0; i < n; i++) view.recordUnknownName(`name-${i}`, ID("a"), `s${i}`);
  const snap = view.snapshot(cacheDebug([]), "/sock", 0);
  assert.is(snap.unknownNames.length, MAX_UNKNOWN_NAME_SAMPLE);
  assert.is(snap.unknownNames[0]!.name, "name-44", "the oldest went first");
  assert.is(snap.unknownNames.at(-1)!.name, `name-${n - 1}`);
  assert.is(snap.unknownNamesTotal, n);
  assert.is(await metricValue(registry, "meshkey_sds_unknown_names_total"), n);
});

test("a name asked again is one sample entry with a count and the last asker", () => {
  const { view, clock } = setup();
  view.recordUnknownName("nope", ID("a"), "s1");
  clock.advance(5_000);
  view.recordUnknownName("nope", ID("b"), "s2");
  const [u] = view.snapshot(cacheDebug([]), "/sock", 0).unknownNames;
  assert.equal(u, { name: "nope", count: 2, lastSpiffeId: ID("b"), lastSeen: new Date(clock.now()).toISOString() });
});

test(`a long unknown name is sampled and logged cut to ${UNKNOWN_NAME_SAMPLE_CHARS} characters`, () => {
  const { view, warnings } = setup();
  view.recordUnknownName("x".repeat(2_000), ID("a"), "s1");
  const [u] = view.snapshot(cacheDebug([]), "/sock", 0).unknownNames;
  assert.ok(u!.name.startsWith("x".repeat(UNKNOWN_NAME_SAMPLE_CHARS)));
  assert.ok(u!.name.length < UNKNOWN_NAME_SAMPLE_CHARS + 32, u!.name);
  assert.match(u!.name, "(2000 chars)");
  assert.is(warnings[0]!.name, u!.name);
});

// Steps on the manual clock: [ms to advance first, names asked, warnings logged in that step, `suppressed` on the step's first warning].
const steps: Array<[string, number, number, number, number | undefined]> = [
  ["a burst: the first ten warned, the rest counted", 0, 25, UNKNOWN_NAME_LOGS_PER_WINDOW, undefined],
  ["later in the same window: none warned", UNKNOWN_NAME_LOG_WINDOW_MS - 1, 5, 0, undefined],
  ["the next window: warned again, the first says how many were suppressed", 1, 3, 3, 25 - UNKNOWN_NAME_LOGS_PER_WINDOW + 5],
  ["a window later, nothing was suppressed in between: no count", UNKNOWN_NAME_LOG_WINDOW_MS, 1, 1, undefined],
];

test("unknown-name warnings: at most UNKNOWN_NAME_LOGS_PER_WINDOW per window, on the injected clock", () => {
  const { view, warnings, clock } = setup();
  let seq = 0;
  for (const [what, advance, asked, logged, suppressed] of steps) {
    clock.advance(advance);
    const before = warnings.length;
    for (let i = 0; i < asked; i++) view.recordUnknownName(`n${seq++}`, ID("a"), "s1");
    const got = warnings.slice(before);
    assert.is(got.length, logged, what);
    if (logged > 0) assert.is(got[0]!.suppressed, suppressed, what);
    assert.ok(got.slice(1).every((w) => w.suppressed === undefined), what);
  }
  assert.is(view.snapshot(cacheDebug([]), "/sock", 0).unknownNamesTotal, seq, "every name counted, warned or not");
});

test("the last NACK is kept per identity, for at most maxNackRecords identities (least recently NACKed go first)", () => {
  const { view } = setup({ maxNackRecords: 3 });
  const ids = ["a", "b", "c"].map(ID);
  const entries = ids.map((id, i) => view.newStream(`s${i}`, "StreamSecrets", id));
  const nack = (i: number, message: string) => view.recordNack(entries[i]!, { names: ["default"], versions: ["v1"], code: 3, message });
  nack(0, "a1");
  nack(1, "b1");
  nack(2, "c1");
  nack(0, "a2"); // a is the newest again
  const d = view.newStream("s9", "StreamSecrets", ID("d"));
  view.recordNack(d, { names: ["ROOTCA"], versions: ["r"], code: 3, message: "d1" });
  const snap = view.snapshot(cacheDebug([...ids, ID("d")]), "/sock", 0);
  assert.equal(
    snap.identities.map((i) => [i.spiffeId, i.lastNack?.message]),
    [[ID("a"), "a2"], [ID("b"), undefined], [ID("c"), "c1"], [ID("d"), "d1"]],
  );
  assert.is(entries[0]!.lastNack?.message, "a2", "the stream keeps its own last NACK");
});

test("the snapshot: open streams per identity, their names truncated, closed ones gone", () => {
  const { view, clock } = setup();
  const long = "y".repeat(300);
  const a1 = view.newStream("s1", "StreamSecrets", ID("a"));
  a1.session = { names: () => ["default", long] };
  const a2 = view.newStream("s2", "DeltaSecrets", ID("a"));
  const b = view.newStream("s3", "StreamSecrets", ID("b"));
  for (const e of [a1, a2, b]) view.opened(e);
  view.closed("s3");
  const snap = view.snapshot(cacheDebug([ID("a"), ID("b")]), "/run/sds", 7);
  assert.equal(snap.identities.map((i) => [i.spiffeId, i.streams]), [[ID("a"), 2], [ID("b"), 0]]);
  assert.equal(snap.streams.map((s) => s.id), ["s1", "s2"]);
  assert.is(snap.streams[0]!.names[0], "default");
  assert.ok(snap.streams[0]!.names[1]!.length < 200);
  assert.not.ok("session" in snap.streams[0]!, "the session object is not in the JSON");
  assert.is(snap.streams[0]!.openedAt, new Date(clock.now()).toISOString());
  assert.equal([snap.socket, snap.trustDomain, snap.rootFingerprint, snap.authFailures], ["/run/sds", "cluster.local", "ab:cd", 7]);
});

test.run();
