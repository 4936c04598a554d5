// The secret cache's metrics, fed by hand: the series an operator's dashboards expect from
// the first scrape, what each event counts, and the bounded expiry gauges.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Registry } from "prom-client";
import { createSecretCacheMetrics, MAX_EXPIRY_SERIES, type IdentityView } from "../../src/sds/secret-cache-metrics.js";
import { metricValue } from "./sds-harness.js";

const T0 = Date.parse("2025-01-01T00:00:00Z");
const id = (n: number) => `spiffe://cluster.local/ns/foo/sa/sa-${n}`;

function setup(identities: IdentityView[] = []) {
  const registry = new Registry();
  const held = new Map(identities.map((i) => [i.spiffeId, i]));
  const events = createSecretCacheMetrics({ registry, now: () => T0, identities: held });
  return { registry, held, events };
}
const servingFor = (spiffeId: string, secondsLeft: number): IdentityView => ({ spiffeId, cert: { info: { notAfter: new Date(T0 + secondsLeft * 1000) } } });

test("every result and reason is a series at 0 before the first CSR", async () => {
  const { registry } = setup();
  const json = await registry.getMetricsAsJSON();
  const series = (name: string) => json.find((m) => m.name === name)!.values.map((v) => [v.labels, v.value]);
  assert.equal(series("meshkey_sds_csr_total"), ["success", "unavailable", "unauthenticated", "invalid"].map((result) => [{ result }, 0]));
  assert.equal(series("meshkey_sds_renewal_failures_total"), ["unavailable", "unauthenticated", "invalid", "token_expired"].map((reason) => [{ reason }, 0]));
  assert.is(await metricValue(registry, "meshkey_sds_identities"), 0);
  assert.equal(json.find((m) => m.name === "meshkey_sds_cert_expiry_seconds")!.values, [], "no certificate: no sample (0 would read as expired)");
  assert.equal(
    json.map((m) => m.name).sort(),
    [
      "meshkey_sds_cert_expiry_seconds",
      "meshkey_sds_csr_duration_seconds",
      "meshkey_sds_csr_total",
      "meshkey_sds_identities",
      "meshkey_sds_identity_cert_expiry_seconds",
      "meshkey_sds_renewal_failures_total",
    ],
  );
});

// [event, what it adds: metric name, labels, amount]
const counted: Array<[string, (e: ReturnType<typeof setup>["events"]) => void, Array<[string, Record<string, string>, number]>]> = [
  ["a first certificate issued", (e) => e.issued({ spiffeId: id(1), renewal: false, seconds: 0.02 }), [["meshkey_sds_csr_total", { result: "success" }, 1], ["meshkey_sds_renewal_failures_total", {}, 0]]],
  ["a renewal issued", (e) => e.issued({ spiffeId: id(1), renewal: true, seconds: 0.02 }), [["meshkey_sds_csr_total", { result: "success" }, 1]]],
  ["a first CSR the CA could not take", (e) => e.failed({ spiffeId: id(1), kind: "unavailable", renewal: false }), [["meshkey_sds_csr_total", { result: "unavailable" }, 1], ["meshkey_sds_renewal_failures_total", {}, 0]]],
  [
    "a renewal the CA refused",
    (e) => e.failed({ spiffeId: id(1), kind: "unauthenticated", renewal: true }),
    [["meshkey_sds_csr_total", { result: "unauthenticated" }, 1], ["meshkey_sds_renewal_failures_total", { reason: "unauthenticated" }, 1]],
  ],
  ["a token expired at rotation (no CSR)", (e) => e.tokenExpired({ spiffeId: id(1) }), [["meshkey_sds_csr_total", {}, 0], ["meshkey_sds_renewal_failures_total", { reason: "token_expired" }, 1]]],
];
for (const [name, fire, expected] of counted) {
  test(`${name} counts where an operator looks`, async () => {
    const { registry, events } = setup();
    fire(events);
    for (const [metric, labels, value] of expected) assert.is(await metricValue(registry, metric, labels), value, `${metric} ${JSON.stringify(labels)}`);
  });
}

test("an issuance's duration lands in the histogram", async () => {
  const { registry, events } = setup();
  events.issued({ spiffeId: id(1), renewal: false, seconds: 0.02 });
  const bucket = (le: string) => metricValue(registry, "meshkey_sds_csr_duration_seconds", { le });
  assert.is(await bucket("0.01"), 0);
  assert.is(await bucket("0.025"), 1);
  assert.is(await bucket("+Inf"), 1);
});

test(`the per-identity expiry gauge keeps the ${MAX_EXPIRY_SERIES} soonest to expire; the earliest is its own gauge`, async () => {
  const identities = Array.from({ length: 120 }, (_, i) => servingFor(id(i), 1_000 + ((i * 37) % 120) * 10));
  identities.push({ spiffeId: id(999), cert: undefined });
  const { registry } = setup(identities);
  const values = (await registry.getSingleMetric("meshkey_sds_identity_cert_expiry_seconds")!.get()).values;
  assert.is(values.length, MAX_EXPIRY_SERIES);
  const kept = values.map((v) => v.value).sort((a, b) => a - b);
  assert.is(kept[0], 1_000);
  assert.is(kept.at(-1), 1_000 + (MAX_EXPIRY_SERIES - 1) * 10);
  assert.not.ok(values.some((v) => v.labels.spiffe_id === id(999)), "an identity with no certificate has no series");
  assert.is(await metricValue(registry, "meshkey_sds_cert_expiry_seconds"), 1_000);
  assert.is(await metricValue(registry, "meshkey_sds_identities"), 121);
});

test("identities are read at each scrape: one dropped is gone from the gauges", async () => {
  const { registry, held } = setup([servingFor(id(1), 60), servingFor(id(2), 120)]);
  assert.is(await metricValue(registry, "meshkey_sds_cert_expiry_seconds"), 60);
  held.delete(id(1));
  assert.is(await metricValue(registry, "meshkey_sds_cert_expiry_seconds"), 120);
  assert.is(await metricValue(registry, "meshkey_sds_identity_cert_expiry_seconds", { spiffe_id: id(1) }), 0);
  assert.is(await metricValue(registry, "meshkey_sds_identities"), 1);
});

test.run();
