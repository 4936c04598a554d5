// Fuzzing at ≥ 100k inputs per target (npm run bench -- fuzz), with the arbitraries of
// test/reliability/fuzz-*.test.ts: random and mutated JWTs (authenticator), random and
// mutated CSRs (CA sign), random mesh YAML (parseMesh), and random DiscoveryRequest /
// DeltaDiscoveryRequest messages on the SDS socket and the ADS port of a real
// meshkey (in this process, so that a crash or an unhandled rejection of the servers
// is one of this process). Wire targets count individual requests delivered to the
// server: many per stream, no waits, many streams in parallel. Per target: count,
// seconds, outcomes by kind, crashes (must be 0), unhandled rejections (must be 0),
// heap before/after (after GC). Seeded (FUZZ_SEED) and bounded (FUZZ_BENCH_RUNS,
// and a time limit per target).
import { mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { pino } from "pino";
import { Code, ConnectError, createClient, encodeBinaryHeader } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AggregatedDiscoveryService } from "../gen/envoy/service/discovery/v3/ads_pb.js";
import { SecretDiscoveryService } from "../gen/envoy/service/secret/v3/sds_pb.js";
import {
  AuthenticationError,
  InvalidRequestError,
  createJwtAuthenticator,
  createKeyAndCsr,
  openCertificateAuthority,
  openDevTokenIssuer,
} from "../src/ca/index.js";
import { resolveServeConfig } from "../src/cli/serve-config.js";
import { startMeshkey } from "../src/cli/meshkey-process.js";
import { MeshError, parseMesh } from "../src/mesh/index.js";
import { SDS_TOKEN_HEADER } from "../src/spiffe/index.js";
import {
  csrArb,
  deltaArb,
  meshYamlArb,
  mutatedTokenArb,
  plausibleDeltaArb,
  plausibleSotwArb,
  randomTokenArb,
  SECRET_TYPE,
  SIDECAR_NODE,
  sotwArb,
  type DeltaInit,
  type SotwInit,
} from "../test/reliability/support/arbitraries.js";
import { writeBenchmarkSection } from "./report.js";

const RUNS = Number(process.env.FUZZ_BENCH_RUNS ?? 100_000);
const SEED = Number(process.env.FUZZ_SEED ?? 20261123);
const TARGET_LIMIT_MS = Number(process.env.FUZZ_BENCH_TARGET_SECONDS ?? 100) * 1000;
const STREAMS_IN_PARALLEL = 48;
const CHUNK = 2_000;
/** One request in this many (after a stream's first) is fully random: most streams live for a hundred requests or so. */
const HOSTILE_ONE_IN = 150;

const unhandled: unknown[] = [];
process.on("unhandledRejection", (err) => unhandled.push(err));
const gc = () => (globalThis as { gc?: () => void }).gc?.();
const heapMiB = () => {
  gc();
  return process.memoryUsage().heapUsed / 1048576;
};

interface Row {
  target: string;
  count: number;
  seconds: number;
  kinds: Map<string, number>;
  crashes: number;
  crashSamples: string[];
  unhandled: number;
  heapBefore: number;
  heapAfter: number;
  note?: string;
  /** Wire targets: streams the servers still count once every client hung up (must be 0). */
  streamsLeft?: number;
}

/** A short, stable name for a kind of rejection: the error class and its first words, numbers and quotes removed. */
function kindOf(err: unknown): string {
  const e = err as Error;
  const head = err instanceof ConnectError ? `gRPC ${Code[err.code]}` : e.name;
  const msg = (err instanceof ConnectError ? err.rawMessage : e.message) ?? "";
  const words = msg
    .replace(/"[^"]*"|'[^']*'|`[^`]*`/g, "…")
    .replace(/[0-9]+/g, "N")
    .split(/\s+/)
    .slice(0, 5)
    .join(" ")
    .replace(/["'`\\|<>]+/g, "")
    .replace(/[:,.]$/, "");
  return `${head}: ${words}`;
}

/** Runs `check` over RUNS generated inputs, in chunks of generated samples (seeded). */
async function inputTarget<T>(target: string, arb: fc.Arbitrary<T>, check: (input: T) => Promise<string>): Promise<Row> {
  const unhandled0 = unhandled.length;
  const row: Row = { target, count: 0, seconds: 0, kinds: new Map(), crashes: 0, crashSamples: [], unhandled: 0, heapBefore: heapMiB(), heapAfter: 0 };
  const t0 = performance.now();
  for (let chunk = 0; row.count < RUNS; chunk++) {
    if (performance.now() - t0 > TARGET_LIMIT_MS) {
      row.note = "stopped by the time limit";
      break;
    }
    for (const input of fc.sample(arb, { numRuns: Math.min(CHUNK, RUNS - row.count), seed: SEED + chunk })) {
      let kind: string;
      try {
        kind = await check(input);
      } catch (err) {
        kind = "CRASH";
        row.crashes++;
        if (row.crashSamples.length < 3) row.crashSamples.push(`${(err as Error).name}: ${(err as Error).message}`.slice(0, 200));
      }
      row.kinds.set(kind, (row.kinds.get(kind) ?? 0) + 1);
      row.count++;
    }
  }
  row.seconds = (performance.now() - t0) / 1000;
  row.heapAfter = heapMiB();
  row.unhandled = unhandled.length - unhandled0;
  return row;
}

/** A typed rejection is a kind; anything else is rethrown (a crash). */
function expectTyped(err: unknown, ...types: Array<abstract new (...a: never[]) => Error>): string {
  if (types.some((t) => err instanceof t)) return kindOf(err);
  throw err;
}

const dir = mkdtempSync(join(tmpdir(), "meshkey-fuzz-bench-"));
const rows: Row[] = [];
try {
  // --- the inputs: tokens, CSRs, mesh YAML ---
  const issuer = await openDevTokenIssuer(join(dir, "inputs"));
  const auth = createJwtAuthenticator({ jwks: { keys: issuer.jwks }, issuer: issuer.issuer });
  const ca = await openCertificateAuthority({ stateDir: join(dir, "inputs"), trustDomain: "cluster.local" });
  const validToken = await issuer.mint({ namespace: "foo", serviceAccount: "sleep" });
  const validCsr = (await createKeyAndCsr("ec-p256")).csrPem;

  rows.push(
    await inputTarget("JWT (authenticator): random and mutated tokens", fc.oneof(randomTokenArb, mutatedTokenArb(validToken)), async (token) => {
      try {
        const who = await auth.authenticate(token);
        // base64url has slack in its last character: a mutation there may decode to the same token.
        if (who.namespace !== "foo" || who.serviceAccount !== "sleep") throw new Error(`forged token accepted as ${who.namespace}/${who.serviceAccount}`);
        return "accepted (same bytes after base64url decoding)";
      } catch (err) {
        return expectTyped(err, AuthenticationError);
      }
    }),
  );
  console.log("tokens done");
  rows.push(
    await inputTarget("CSR (CA sign): random and mutated CSRs", csrArb(validCsr), async (csr) => {
      try {
        const chain = await ca.sign(csr, { namespace: "foo", serviceAccount: "sleep" });
        if (chain.length < 2) throw new Error("signed without a chain");
        return "signed (signature still valid, caller's SAN)";
      } catch (err) {
        return expectTyped(err, InvalidRequestError);
      }
    }),
  );
  console.log("CSRs done");
  rows.push(
    await inputTarget("mesh YAML (parseMesh): random and mutated", meshYamlArb, async (text) => {
      try {
        const model = parseMesh(text, "fuzz.yaml");
        if (!Array.isArray(model.services)) throw new Error("a model without services");
        return "valid model";
      } catch (err) {
        if (err instanceof MeshError && !err.message.startsWith("fuzz.yaml")) throw new Error(`MeshError without the file name: ${err.message}`);
        return expectTyped(err, MeshError);
      }
    }),
  );
  console.log("mesh done");

  // --- the wire: SDS socket and ADS port of a real meshkey in this process ---
  const socketPath = join(dir, "uds_path");
  const meshkey = await startMeshkey(
    resolveServeConfig(["--state-dir", join(dir, "state"), "--sds-socket", socketPath, "--xds-listen", "127.0.0.1:0", "--ca-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]),
    pino({ level: "silent" }),
  );
  try {
    const tokens = await Promise.all(Array.from({ length: 16 }, (_, i) => meshkey.devIssuer!.mint({ namespace: "foo", serviceAccount: `sa-${i}` })));
    const ADS_TYPES = [
      "type.googleapis.com/envoy.config.cluster.v3.Cluster",
      "type.googleapis.com/envoy.config.listener.v3.Listener",
      "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
      "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    ];
    const adsNodes = [SIDECAR_NODE, "sidecar~127.0.0.2~httpbin-1.bar~bar.svc.cluster.local", "proxyless-fuzz"];
    // A stream: a first request that names a node (a hostile one now and then), then up to 200 more.
    const streamArb = <R>(first: fc.Arbitrary<R>, rest: fc.Arbitrary<R>) => fc.tuple(first, fc.array(rest, { minLength: 10, maxLength: 200 })).map(([f, r]) => [f, ...r]);
    const adsFirstSotw = fc.oneof(
      { weight: 9, arbitrary: fc.record({ node: fc.record({ id: fc.constantFrom(...adsNodes), metadata: fc.constant({ GENERATOR: "grpc" }) }), typeUrl: fc.constantFrom(...ADS_TYPES) }) as fc.Arbitrary<SotwInit> },
      { weight: 1, arbitrary: sotwArb },
    );
    const adsFirstDelta = fc.oneof(
      { weight: 9, arbitrary: fc.record({ node: fc.record({ id: fc.constantFrom(...adsNodes) }), typeUrl: fc.constantFrom(...ADS_TYPES) }) as fc.Arbitrary<DeltaInit> },
      { weight: 1, arbitrary: deltaArb },
    );
    const sdsFirstSotw = fc.oneof(
      { weight: 9, arbitrary: fc.record({ node: fc.constant({ id: SIDECAR_NODE }), typeUrl: fc.constant(SECRET_TYPE), resourceNames: fc.subarray(["default", "ROOTCA"], { minLength: 1 }) }) as fc.Arbitrary<SotwInit> },
      { weight: 1, arbitrary: sotwArb },
    );
    const sdsFirstDelta = fc.oneof(
      { weight: 9, arbitrary: fc.record({ node: fc.constant({ id: SIDECAR_NODE }), typeUrl: fc.constant(SECRET_TYPE), resourceNamesSubscribe: fc.subarray(["default", "ROOTCA"], { minLength: 1 }) }) as fc.Arbitrary<DeltaInit> },
      { weight: 1, arbitrary: deltaArb },
    );

    type Open = (input: AsyncIterable<SotwInit | DeltaInit>, signal: AbortSignal, k: number) => AsyncIterable<unknown>;
    /** Drives streams of generated requests, STREAMS_IN_PARALLEL at a time, until RUNS requests were delivered. */
    async function wireTarget(target: string, kinds: Array<{ arb: fc.Arbitrary<Array<SotwInit | DeltaInit>>; open: () => Open; label: string }>): Promise<Row> {
      const unhandled0 = unhandled.length;
      const row: Row = { target, count: 0, seconds: 0, kinds: new Map(), crashes: 0, crashSamples: [], unhandled: 0, heapBefore: heapMiB(), heapAfter: 0 };
      const add = (k: string) => row.kinds.set(k, (row.kinds.get(k) ?? 0) + 1);
      let undelivered = 0;
      let streams = 0;
      const t0 = performance.now();
      const deadline = t0 + TARGET_LIMIT_MS;
      let pool: Array<{ reqs: Array<SotwInit | DeltaInit>; kind: (typeof kinds)[number] }> = [];
      let chunk = 0;
      const nextStream = () => {
        if (pool.length === 0) {
          pool = kinds.flatMap((kind, i) => fc.sample(kind.arb, { numRuns: 100, seed: SEED + 7919 * i + chunk }).map((reqs) => ({ reqs, kind })));
          chunk++;
        }
        return pool.pop()!;
      };
      const worker = async (w: number) => {
        const opens = kinds.map((k) => k.open());
        while (row.count < RUNS && performance.now() < deadline) {
          const { reqs, kind } = nextStream();
          const open = opens[kinds.indexOf(kind)]!;
          streams++;
          const input = createWritableIterable<SotwInit | DeltaInit>();
          const abort = new AbortController();
          const reader = (async () => {
            try {
              for await (const _ of open(input, abort.signal, w)) {
                /* responses are fine */
              }
              return `${kind.label}: stream ended OK`;
            } catch (err) {
              if (err instanceof ConnectError) return `${kind.label}: ${kindOf(err)}`;
              row.crashes++;
              if (row.crashSamples.length < 3) row.crashSamples.push(String(err).slice(0, 200));
              return "CRASH";
            }
          })();
          for (const r of reqs) {
            try {
              await input.write(r);
              row.count++;
            } catch {
              undelivered += reqs.length - reqs.indexOf(r);
              break;
            }
          }
          input.close();
          const timer = setTimeout(() => abort.abort(), 3000);
          add(await reader);
          clearTimeout(timer);
        }
      };
      await Promise.all(Array.from({ length: STREAMS_IN_PARALLEL }, (_, w) => worker(w)));
      row.seconds = (performance.now() - t0) / 1000;
      // Hang up every client connection; the servers must then hold no stream.
      for (const sm of sessionManagers.splice(0)) sm.abort();
      let open = Infinity;
      for (let i = 0; i < 100 && open > 0; i++) {
        open = (await gauge("meshkey_sds_active_streams")) + (await gauge("meshkey_xds_streams"));
        if (open > 0) await new Promise((r) => setTimeout(r, 50));
      }
      row.streamsLeft = open;
      if (row.count < RUNS) row.note = "stopped by the time limit";
      row.note = `${streams} streams; ${undelivered} requests not delivered (their stream had already failed)${row.note ? `; ${row.note}` : ""}`;
      await new Promise((r) => setTimeout(r, 500));
      row.heapAfter = heapMiB();
      row.unhandled = unhandled.length - unhandled0;
      return row;
    }

    const sessionManagers: Http2SessionManager[] = [];
    const gauge = async (name: string) => {
      const text = await meshkey.registry.metrics();
      return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))].reduce((a, m) => a + Number(m[1]), 0);
    };
    const sdsOpen = (delta: boolean): (() => Open) => () => {
      const sessions = Array.from({ length: 4 }, () => new Http2SessionManager("http://localhost", undefined, { createConnection: () => net.connect(socketPath) }));
      sessionManagers.push(...sessions);
      const clients = sessions.map((sessionManager) => createClient(SecretDiscoveryService, createGrpcTransport({ baseUrl: "http://localhost", sessionManager })));
      let n = 0;
      return (input, signal, w) => {
        const token = tokens[(w + n++) % tokens.length]!;
        const headers = { [SDS_TOKEN_HEADER]: encodeBinaryHeader(new TextEncoder().encode(token)) };
        const c = clients[n % clients.length]!;
        return delta ? c.deltaSecrets(input as AsyncIterable<DeltaInit>, { headers, signal }) : c.streamSecrets(input as AsyncIterable<SotwInit>, { headers, signal });
      };
    };
    const adsOpen = (delta: boolean): (() => Open) => () => {
      const sessionManager = new Http2SessionManager(`http://${meshkey.addresses.xds}`);
      sessionManagers.push(sessionManager);
      const c = createClient(AggregatedDiscoveryService, createGrpcTransport({ baseUrl: `http://${meshkey.addresses.xds}`, sessionManager }));
      return (input, signal) => (delta ? c.deltaAggregatedResources(input as AsyncIterable<DeltaInit>, { signal }) : c.streamAggregatedResources(input as AsyncIterable<SotwInit>, { signal }));
    };

    rows.push(
      await wireTarget("SDS socket: random DiscoveryRequest / DeltaDiscoveryRequest", [
        { label: "SotW", arb: streamArb(sdsFirstSotw, plausibleSotwArb([SECRET_TYPE], HOSTILE_ONE_IN)), open: sdsOpen(false) },
        { label: "delta", arb: streamArb(sdsFirstDelta, plausibleDeltaArb([SECRET_TYPE], HOSTILE_ONE_IN)), open: sdsOpen(true) },
      ]),
    );
    console.log("SDS done");
    rows.push(
      await wireTarget("ADS port: random DiscoveryRequest / DeltaDiscoveryRequest", [
        { label: "SotW", arb: streamArb(adsFirstSotw, plausibleSotwArb(ADS_TYPES, HOSTILE_ONE_IN)), open: adsOpen(false) },
        { label: "delta", arb: streamArb(adsFirstDelta, plausibleDeltaArb(ADS_TYPES, HOSTILE_ONE_IN)), open: adsOpen(true) },
      ]),
    );
    console.log("ADS done");
  } finally {
    await meshkey.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const top = (kinds: Map<string, number>, n = 6) => {
  const sorted = [...kinds.entries()].sort((a, b) => b[1] - a[1]);
  const shown = sorted.slice(0, n).map(([k, c]) => `${c} × ${k.replace(/\|/g, "\\|")}`);
  const rest = sorted.slice(n).reduce((a, [, c]) => a + c, 0);
  return [...shown, ...(rest > 0 ? [`${rest} × ${sorted.length - n} other kinds`] : [])].join("<br>");
};
const table = [
  "| target | count | seconds | per second | outcomes by kind | crashes | unhandled rejections | streams left open | heap before → after (MiB) |",
  "|---|---:|---:|---:|---|---:|---:|---:|---|",
  ...rows.map(
    (r) =>
      `| ${r.target}${r.note ? ` (${r.note})` : ""} | ${r.count} | ${r.seconds.toFixed(1)} | ${Math.round(r.count / r.seconds)} | ${top(r.kinds)} | ${r.crashes} | ${r.unhandled} | ${r.streamsLeft ?? "–"} | ${r.heapBefore.toFixed(1)} → ${r.heapAfter.toFixed(1)} |`,
  ),
];
for (const r of rows) {
  console.log(`${r.target}: ${r.count} in ${r.seconds.toFixed(1)} s, crashes ${r.crashes}, unhandled ${r.unhandled}, heap ${r.heapBefore.toFixed(1)} → ${r.heapAfter.toFixed(1)} MiB`);
  for (const s of r.crashSamples) console.log(`  crash: ${s}`);
}
const failed = rows.some((r) => r.crashes > 0 || r.unhandled > 0 || r.count < RUNS || (r.streamsLeft ?? 0) > 0);
writeBenchmarkSection(
  "fuzz",
  `## Fuzz (≥ 100k inputs per target)
\`npm run bench -- fuzz\` (${new Date().toISOString().slice(0, 16)}Z, Node ${process.version}, ${cpus().length} cores, load average ${loadavg()[0]!.toFixed(1)}),
seed ${SEED}. The arbitraries are those of test/reliability/fuzz-*.test.ts (test/reliability/support/arbitraries.ts).
Token, CSR and mesh inputs call the part directly; "crash" = any exception other than the part's typed error, or a
forged token or CSR accepted. Wire targets run against a real meshkey (SDS on its Unix socket, ADS on 127.0.0.1) in the
bench process, with connect-node clients, ${STREAMS_IN_PARALLEL} streams at a time, 11–201 requests per stream written back to back
(a first request that names a node, then requests with valid types and random names, versions, nonces and NACKs,
one in ${HOSTILE_ONE_IN} fully random); the count is requests delivered to the server, the kinds are how the streams ended
(a hostile request ends its stream with a gRPC error; the rest of that stream is not delivered and not counted).
Heap is after GC, in the bench process (which hosts the servers), once every client connection is closed and the servers'
stream gauges (meshkey_sds_active_streams, meshkey_xds_streams) are back to 0.

${table.join("\n")}
${failed ? "\n**FAILED**: a crash, an unhandled rejection or a target short of the count.\n" : ""}`,
);
process.exit(failed ? 1 : 0);
