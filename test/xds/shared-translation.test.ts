// Translation once per view: sidecars that share a view share the very same packed
// resources; every node's snapshot is what translating it alone gives (bytes and
// versions); a change repacks only what it touches; SDS config sources are
// byte-identical without any cache; mesh-file changes are debounced on a fake clock.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { toBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ConfigSourceSchema } from "../../gen/envoy/config/core/v3/config_source_pb.js";
import { UpstreamTlsContextSchema } from "../../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import { parseMesh, sdsConfigSource, translateForNode, type MeshModel } from "../../src/mesh/index.js";
import { createMeshController, createSnapshotCache, snapshotFromResources, TypeUrl, type Snapshot, type WatchNode } from "../../src/xds/index.js";
import { createDebouncer, type DebounceClock } from "../../src/xds/push-debounce.js";
import { createTranslationCache } from "../../src/xds/translation-cache.js";

const opts = { trustDomain: "cluster.local", sdsSocketPath: "/var/run/sds/uds_path", tokenPath: "/var/run/secrets/tokens/istio-token" };

function meshOf(services: number, endpointPort = 18080): MeshModel {
  const lines = ["namespaces: [{name: ns1, mtls: PERMISSIVE}]", "services:"];
  for (let i = 0; i < services; i++) {
    const port = i % 7 === 6 ? `{name: tcp, port: ${9000 + i}, protocol: TCP}` : i % 5 === 4 ? "{name: grpc, port: 9090, protocol: GRPC}" : "{name: http, port: 8000, protocol: HTTP}";
    lines.push(`  - {name: svc${i}, namespace: ns${i % 3}, serviceAccount: sa${i}, ports: [${port}], endpoints: [{address: 127.106.${i >> 8}.${(i & 255) + 1}, port: ${i === 3 ? endpointPort : 18080}}]}`);
  }
  return parseMesh(lines.join("\n"), "mesh.yaml");
}

const sidecar = (i: number, md: Record<string, string> = {}): WatchNode => ({
  id: `sidecar~127.106.0.${i + 1}~svc${i}-1.ns${i % 3}~ns${i % 3}.svc.cluster.local`,
  metadata: md,
});

/** Every type's version and every resource's name, version and bytes. */
function contents(s: Snapshot) {
  return Object.fromEntries(
    [...s.types].map(([t, ts]) => [t, { version: ts.version, resources: [...ts.resources.values()].map((r) => [r.name, r.version, Buffer.from(r.any.value).toString("base64")]) }]),
  );
}

test("each node's snapshot is byte for byte and version for version what translating it alone gives", () => {
  const mesh = meshOf(40);
  const t = createTranslationCache(opts).translate(mesh);
  const nodes = [
    sidecar(0),
    sidecar(1),
    sidecar(2, { SDS_TOKEN_PATH: "/tokens/two" }),
    sidecar(5, { SDS_SOCKET: "/run/other.sock" }),
    sidecar(4),
    { id: "sidecar~127.106.9.9~nobody-1.ns1~ns1.svc.cluster.local" },
    { id: "grpc-client", metadata: { GENERATOR: "grpc" } },
  ];
  for (const node of nodes) {
    assert.equal(contents(t.snapshotFor(node)), contents(snapshotFromResources(translateForNode(mesh, node, opts))), node.id);
  }
});

test("sidecars of one view share the packed clusters, routes and endpoints; another token path gets its own clusters", () => {
  const mesh = meshOf(30);
  const t = createTranslationCache(opts).translate(mesh);
  const [a, b, c] = [t.snapshotFor(sidecar(0)), t.snapshotFor(sidecar(3)), t.snapshotFor(sidecar(1, { SDS_TOKEN_PATH: "/tokens/one" }))];
  const name = "outbound|8000||svc1.ns1.svc.cluster.local";
  assert.ok(a.get(TypeUrl.Cluster)!.resources.get(name) === b.get(TypeUrl.Cluster)!.resources.get(name), "one packed cluster for both");
  assert.ok(a.get(TypeUrl.Endpoint) === b.get(TypeUrl.Endpoint), "one EDS type snapshot for every sidecar");
  assert.ok(a.get(TypeUrl.Route) === b.get(TypeUrl.Route), "same namespace: one RDS type snapshot");
  assert.ok(a.get(TypeUrl.Endpoint) === c.get(TypeUrl.Endpoint));
  assert.ok(a.get(TypeUrl.Cluster)!.resources.get(name) !== c.get(TypeUrl.Cluster)!.resources.get(name), "the token path is in the cluster");
});

test("two sidecars' SDS config sources are byte-identical, built with no cache", () => {
  const mesh = meshOf(10);
  const sources = [sidecar(0), sidecar(3)].map((n) => {
    const set = translateForNode(mesh, n, opts);
    const cluster = set.clusters.find((x) => x.name.startsWith("outbound|"))!;
    const socket = cluster.transportSocket!.configType;
    assert.is(socket.case, "typedConfig");
    const tls = anyUnpack(socket.value!, UpstreamTlsContextSchema)!;
    return toBinary(ConfigSourceSchema, tls.commonTlsContext!.tlsCertificateSdsSecretConfigs[0]!.sdsConfig!);
  });
  assert.ok(sources[0]!.length > 0);
  assert.equal(Buffer.from(sources[0]!), Buffer.from(sources[1]!));
  assert.equal(Buffer.from(toBinary(ConfigSourceSchema, sdsConfigSource(opts))), Buffer.from(sources[0]!));
  assert.ok(sdsConfigSource(opts) !== sdsConfigSource(opts), "a fresh message each time: nothing cached");
});

test("an endpoint change repacks only EDS: clusters, listeners and routes are the very same objects", () => {
  const cache = createTranslationCache(opts);
  const t1 = cache.translate(meshOf(20));
  const s1 = t1.snapshotFor(sidecar(0));
  cache.commit(t1);
  const t2 = cache.translate(meshOf(20, 18099));
  const s2 = t2.snapshotFor(sidecar(0));
  for (const type of [TypeUrl.Cluster, TypeUrl.Listener, TypeUrl.Route]) {
    assert.is(s2.get(type)!.version, s1.get(type)!.version, type);
    for (const r of s2.get(type)!.resources.values()) assert.ok(s1.get(type)!.resources.get(r.name) === r, `${r.name} reused`);
  }
  assert.is.not(s2.get(TypeUrl.Endpoint)!.version, s1.get(TypeUrl.Endpoint)!.version);
  const changed = [...s2.get(TypeUrl.Endpoint)!.resources.values()].filter((r) => s1.get(TypeUrl.Endpoint)!.resources.get(r.name) !== r);
  assert.equal(changed.map((r) => r.name), ["outbound|8000||svc3.ns0.svc.cluster.local"]);
});

test("a watched sidecar is pushed only the types that changed", () => {
  const cache = createSnapshotCache();
  const ctl = createMeshController({ cache, mesh: meshOf(20), translate: opts });
  const node = sidecar(0);
  cache.openNode(node);
  const pushed: string[] = [];
  const versions = new Map<string, string>();
  const watchAll = () => {
    for (const typeUrl of [TypeUrl.Cluster, TypeUrl.Endpoint, TypeUrl.Listener, TypeUrl.Route]) {
      cache.createWatch(node.id, { typeUrl, names: new Set(), wildcard: true, knownVersion: versions.get(typeUrl) ?? "", force: false }, (r) => {
        pushed.push(typeUrl);
        versions.set(typeUrl, r.version);
      });
    }
  };
  try {
    watchAll();
    assert.is(pushed.length, 4);
    pushed.length = 0;
    watchAll(); // waiting now (everything is known)
    assert.equal(ctl.setMesh(meshOf(20, 18099)), []);
    assert.equal(pushed, [TypeUrl.Endpoint]);
  } finally {
    cache.closeNode(node.id);
    ctl.close();
  }
});

function fakeClock() {
  let now = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  let ids = 0;
  const clock: DebounceClock = {
    now: () => now,
    setTimeout: (fn, ms) => {
      timers.set(++ids, { at: now + ms, fn });
      return ids;
    },
    clearTimeout: (h) => void timers.delete(h as number),
  };
  const advance = (ms: number) => {
    const end = now + ms;
    for (;;) {
      const next = [...timers.entries()].sort((a, b) => a[1].at - b[1].at)[0];
      if (!next || next[1].at > end) break;
      timers.delete(next[0]);
      now = next[1].at;
      next[1].fn();
    }
    now = end;
  };
  return { clock, advance };
}

test("mesh changes are published 100 ms after the last one of a burst, and at least every second", () => {
  const { clock, advance } = fakeClock();
  const fired: Array<[number, number]> = [];
  const d = createDebouncer<number>((v) => fired.push([clock.now(), v]), { clock });
  d.push(1);
  advance(50);
  d.push(2);
  advance(99);
  assert.equal(fired, []);
  advance(1);
  assert.equal(fired, [[150, 2]], "only the latest, 100 ms after it");
  fired.length = 0;
  // A change every 50 ms: never quiet for 100 ms, so the max delay publishes.
  const start = clock.now();
  for (let i = 0; i < 30; i++) {
    d.push(100 + i);
    advance(50);
  }
  assert.ok(fired.length >= 1 && fired[0]![0] - start <= 1000, JSON.stringify(fired));
  d.cancel();
  assert.is(d.pending(), false);
});

test.run();
