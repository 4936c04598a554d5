// ADS at a mesh of 50 services with 3 real Envoy sidecars: a change to one service
// reaches all three with nothing rejected, and only the types that changed are pushed,
// as Envoy's own per-type counters show (update_attempt / update_success /
// update_rejected for CDS, LDS, RDS and the clusters' EDS).
import * as assert from "uvu/assert";
import { envoySuite, type EnvoyProcess } from "../support/envoy.js";
import { createMeshWorld, waitForSidecarSynced, type MeshWorld, type Sidecar, type Workload } from "../support/mesh-world.js";

const test = envoySuite("ads-scale");

const SERVICES = 50;
let world: MeshWorld;
let serving: Workload[];
let sidecars: Sidecar[];

interface Counters {
  cds: { attempt: number; success: number; rejected: number };
  lds: { attempt: number; success: number; rejected: number };
  rds: { attempt: number; success: number; rejected: number };
  /** Summed over every EDS cluster. */
  eds: { attempt: number; success: number; rejected: number };
  /** update_success of one EDS cluster, by cluster name. */
  edsOf: Map<string, number>;
}

const clusterName = (w: Workload) => `outbound|${w.port}||${w.name}.${w.namespace}.svc.cluster.local`;

async function counters(envoy: EnvoyProcess): Promise<Counters> {
  const all = await envoy.stats();
  const get = (k: string) => all.get(k) ?? 0;
  const sum = (re: RegExp) => [...all].filter(([k]) => re.test(k)).reduce((n, [, v]) => n + v, 0);
  const edsOf = new Map<string, number>();
  for (const [k, v] of all) {
    const m = /^cluster\.(outbound\|.*)\.update_success$/.exec(k);
    if (m) edsOf.set(m[1]!, v);
  }
  return {
    cds: { attempt: get("cluster_manager.cds.update_attempt"), success: get("cluster_manager.cds.update_success"), rejected: get("cluster_manager.cds.update_rejected") },
    lds: { attempt: get("listener_manager.lds.update_attempt"), success: get("listener_manager.lds.update_success"), rejected: get("listener_manager.lds.update_rejected") },
    rds: { attempt: sum(/^http\..*\.rds\..*\.update_attempt$/), success: sum(/^http\..*\.rds\..*\.update_success$/), rejected: sum(/^http\..*\.rds\..*\.update_rejected$/) },
    eds: { attempt: sum(/^cluster\.outbound\|.*\.update_attempt$/), success: sum(/^cluster\.outbound\|.*\.update_success$/), rejected: sum(/^cluster\.outbound\|.*\.update_rejected$/) },
    edsOf,
  };
}

/** Waits until `check` holds on every sidecar's counters. */
async function untilAll(what: string, check: (c: Counters, i: number) => boolean, ms = 30_000): Promise<Counters[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const now = await Promise.all(sidecars.map((s) => counters(s.envoy)));
    if (now.every(check)) return now;
    if (Date.now() > deadline) assert.unreachable(`${what}: ${JSON.stringify(now.map(({ edsOf: _, ...c }) => c))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test.before(async () => {
  world = await createMeshWorld({ subnet: 105 });
  serving = [];
  for (let i = 0; i < SERVICES; i++) serving.push(await world.workload({ name: `svc${i}`, namespace: `ns${i % 5}` }));
  world.writeMesh(serving);
  sidecars = [];
  for (const w of serving.slice(0, 3)) sidecars.push(await world.startSidecar(w));
  for (const s of sidecars) await waitForSidecarSynced(s.envoy);
  // Every outbound cluster is warm (its EDS arrived) on every sidecar.
  await untilAll("50 outbound clusters with endpoints", (c) => serving.every((w) => (c.edsOf.get(clusterName(w)) ?? 0) >= 1));
});

test.after(async () => {
  await world?.close();
});

test("an endpoint-only change of one service moves EDS on all three sidecars, and not CDS, LDS or RDS", async () => {
  const before = await untilAll("settled", () => true);
  const moved = serving[10]!;
  // The same service, its endpoint on another workload port: only its load assignment changes.
  serving = serving.map((w) => (w === moved ? { ...w, workloadPort: w.workloadPort + 1 } : w));
  world.writeMesh(serving);
  await untilAll("the moved endpoint applied", (c, i) => (c.edsOf.get(clusterName(moved)) ?? 0) > (before[i]!.edsOf.get(clusterName(moved)) ?? 0));
  // A push drains CDS before EDS (and LDS, RDS after it on the same stream, before the next
  // change): a stray CDS push would already show; LDS / RDS ones by the next read.
  const settled = await untilAll("read again", () => true);
  for (const [i, c] of settled.entries()) {
    const b = before[i]!;
    assert.is(c.eds.rejected, 0, "EDS rejected");
    assert.ok(c.eds.success > b.eds.success, "EDS moved");
    assert.equal(c.cds, b.cds, `CDS untouched on sidecar ${i}`);
    assert.equal(c.lds, b.lds, `LDS untouched on sidecar ${i}`);
    assert.equal(c.rds, b.rds, `RDS untouched on sidecar ${i}`);
  }
});

test("a new service on an existing port moves CDS, EDS and RDS on all three, LDS stays, nothing is rejected", async () => {
  const before = await untilAll("settled", () => true);
  const added = await world.workload({ name: "svc50", namespace: "ns0" });
  serving = [...serving, added];
  world.writeMesh(serving);
  await untilAll(
    "the new cluster warm on all three",
    (c, i) => (c.edsOf.get(clusterName(added)) ?? 0) >= 1 && c.cds.success > before[i]!.cds.success && c.rds.success > before[i]!.rds.success,
  );
  const settled = await untilAll("read again", () => true);
  for (const [i, c] of settled.entries()) {
    const b = before[i]!;
    assert.is(c.cds.rejected, 0, "CDS rejected");
    assert.is(c.rds.rejected, 0, "RDS rejected");
    assert.is(c.eds.rejected, 0, "EDS rejected");
    assert.is(c.lds.rejected, 0, "LDS rejected");
    assert.is(c.cds.attempt - b.cds.attempt, 1, `one CDS push on sidecar ${i}`);
    assert.equal(c.lds, b.lds, `LDS untouched on sidecar ${i} (the outbound listener on :8000 already routes through RDS)`);
  }
});

test.run();
