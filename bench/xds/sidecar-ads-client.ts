// Child process of bench/ads.bench.ts: N Envoy-like sidecars, each on its own HTTP/2
// connection (node:http2, from its own loopback source address 127.16.0.0 + i), each
// with one StreamAggregatedResources stream that behaves as Envoy's ADS mux does:
// CDS and LDS wildcard first (the node only on the first request), then one EDS request
// naming every EDS cluster received and one RDS request naming every route the
// listeners' HTTP connection managers name; every response is ACKed at once (version,
// nonce, the type's current names). Responses are read with a small protobuf wire
// reader (names and references only), so the client stays cheap next to the server.
//
// IPC: {type:"open", port, sidecars, services} → {type:"synced", ms, synced, errors}
//      {type:"watch", changedRoutes} → {type:"watching"}; then → {type:"changed", ms, changed, errors}
//      {type:"status"} → {type:"status", synced, changed, newCluster, newEds, newRoute, errors}
//      {type:"close"}
// "synced": every stream has CDS and LDS, and an EDS / RDS response for every name it
// subscribed. "changed" (after watch): every stream has ACKed a CDS with a cluster it did
// not have before, EDS for it, and, if it asks for a route B changes, an RDS naming the
// new service's host.
import { connect as h2connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from "node:http2";
import { connect as netConnect } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { DiscoveryRequestSchema } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { NEW_SERVICE_HOST, sidecarIp, sidecarNode, TYPE } from "./ads-mesh.js";

const PATH = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
/** Envoy's default HTTP/2 windows (initial_stream_window_size, initial_connection_window_size). */
const WINDOW = 256 * 1024 * 1024;
/** Connections being set up at once (a rollout, not a SYN flood on the accept backlog). */
const CONNECTING = 256;
const now = () => performance.now();
const send = (m: unknown) => process.send!(m);

// --- protobuf wire reading: only what an Envoy needs to know to ask for EDS and RDS ---
type Field = { no: number; wire: number; start: number; end: number; value: number };
function* fields(b: Buffer, start = 0, end = b.length): Generator<Field> {
  let p = start;
  const varint = () => {
    let v = 0;
    let m = 1;
    for (;;) {
      const x = b[p++]!;
      v += (x & 0x7f) * m;
      if (x < 0x80) return v;
      m *= 128;
    }
  };
  while (p < end) {
    const key = varint();
    const no = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) yield { no, wire, start: p, end: p, value: varint() };
    else if (wire === 2) {
      const len = varint();
      yield { no, wire, start: p, end: p + len, value: len };
      p += len;
    } else if (wire === 1) p += 8;
    else if (wire === 5) p += 4;
    else throw new Error(`wire type ${wire}`);
  }
}
const sub = (b: Buffer, f: Field) => b.subarray(f.start, f.end);
const str = (b: Buffer, f: Field) => b.toString("utf8", f.start, f.end);

interface Response {
  version: string;
  typeUrl: string;
  nonce: string;
  resources: Buffer[];
}
function readResponse(b: Buffer): Response {
  const r: Response = { version: "", typeUrl: "", nonce: "", resources: [] };
  for (const f of fields(b)) {
    if (f.no === 1) r.version = str(b, f);
    else if (f.no === 4) r.typeUrl = str(b, f);
    else if (f.no === 5) r.nonce = str(b, f);
    else if (f.no === 2) for (const a of fields(b, f.start, f.end)) if (a.no === 2) r.resources.push(sub(b, a));
  }
  return r;
}
/** Field 1 (the name of a Cluster, Listener, RouteConfiguration, ClusterLoadAssignment). */
function nameOf(b: Buffer): string {
  for (const f of fields(b)) if (f.no === 1 && f.wire === 2) return str(b, f);
  return "";
}
/** The EDS name of a cluster with eds_cluster_config (service_name, else its name). */
function edsNameOf(b: Buffer): string | undefined {
  let name = "";
  let eds: string | undefined;
  for (const f of fields(b)) {
    if (f.no === 1 && f.wire === 2) name = str(b, f);
    else if (f.no === 3 && f.wire === 2) {
      eds = "";
      for (const g of fields(b, f.start, f.end)) if (g.no === 2) eds = str(b, g);
    }
  }
  return eds === undefined ? undefined : eds || name;
}
/** The RDS route names of a listener's HTTP connection managers. */
function routeNamesOf(b: Buffer, out: Set<string>): void {
  for (const f of fields(b)) {
    if ((f.no === 3 || f.no === 25) && f.wire === 2) {
      for (const g of fields(b, f.start, f.end)) {
        if (g.no !== 3) continue; // FilterChain.filters
        for (const h of fields(b, g.start, g.end)) {
          if (h.no !== 4) continue; // Filter.typed_config (Any)
          let url = "";
          let value: Field | undefined;
          for (const a of fields(b, h.start, h.end)) {
            if (a.no === 1) url = str(b, a);
            else if (a.no === 2) value = a;
          }
          if (url !== HCM || !value) continue;
          for (const c of fields(b, value.start, value.end)) {
            if (c.no !== 3) continue; // HttpConnectionManager.rds
            for (const d of fields(b, c.start, c.end)) if (d.no === 2) out.add(str(b, d));
          }
        }
      }
    }
  }
}

// --- one sidecar ---
interface TypeState {
  version: string;
  nonce: string;
  names: string[]; // subscribed (EDS, RDS); [] = wildcard
  got: Set<string>;
}
interface Sidecar {
  i: number;
  session?: ClientHttp2Session;
  stream?: ClientHttp2Stream;
  pending: Buffer;
  types: Map<string, TypeState>;
  synced: boolean;
  // change tracking
  baseClusters?: Set<string>;
  newClusters?: string[];
  rdsHasNew: boolean;
  changed: boolean;
  failed?: string;
}

let sidecars: Sidecar[] = [];
let servicesCount = 0;
let watching = false;
let syncedCount = 0;
let changedCount = 0;
let t0 = 0;
let tWatch = 0;
const errors: Record<string, number> = {};
const fail = (s: Sidecar, why: string) => {
  if (s.failed) return;
  s.failed = why;
  errors[why] = (errors[why] ?? 0) + 1;
  checkDone();
};

function frame(msg: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(5 + msg.length);
  b[0] = 0;
  b.writeUInt32BE(msg.length, 1);
  b.set(msg, 5);
  return b;
}

function request(s: Sidecar, typeUrl: string, withNode = false) {
  const t = s.types.get(typeUrl)!;
  const node = sidecarNode(s.i, servicesCount);
  const req = create(DiscoveryRequestSchema, {
    typeUrl,
    versionInfo: t.version,
    responseNonce: t.nonce,
    resourceNames: t.names,
    ...(withNode ? { node: { id: node.id, cluster: node.cluster ?? "", metadata: node.metadata as never } } : {}),
  });
  s.stream!.write(frame(toBinary(DiscoveryRequestSchema, req)));
}

const sameNames = (a: string[], b: string[]) => a.length === b.length && a.every((x, k) => x === b[k]);

function isSynced(s: Sidecar): boolean {
  const cds = s.types.get(TYPE.cluster)!;
  const lds = s.types.get(TYPE.listener)!;
  if (cds.version === "" || lds.version === "") return false;
  for (const t of [TYPE.endpoint, TYPE.route]) {
    const st = s.types.get(t)!;
    if (!st.names.every((n) => st.got.has(n))) return false;
  }
  return true;
}

function onResponse(s: Sidecar, body: Buffer) {
  const r = readResponse(body);
  const t = s.types.get(r.typeUrl);
  if (!t) return fail(s, `unexpected type ${r.typeUrl}`);
  t.version = r.version;
  t.nonce = r.nonce;
  if (r.typeUrl === TYPE.cluster) {
    const names = new Set<string>();
    const eds: string[] = [];
    for (const c of r.resources) {
      names.add(nameOf(c));
      const e = edsNameOf(c);
      if (e !== undefined) eds.push(e);
    }
    t.got = names;
    request(s, TYPE.cluster); // ACK
    eds.sort();
    const e = s.types.get(TYPE.endpoint)!;
    if (!sameNames(eds, e.names)) {
      e.names = eds;
      request(s, TYPE.endpoint);
    }
    if (s.baseClusters && !s.newClusters) {
      const added = [...names].filter((n) => !s.baseClusters!.has(n));
      if (added.length > 0) s.newClusters = added;
    }
  } else if (r.typeUrl === TYPE.listener) {
    const routes = new Set<string>();
    for (const l of r.resources) routeNamesOf(l, routes);
    t.got = new Set(r.resources.map(nameOf));
    request(s, TYPE.listener);
    const rn = [...routes].sort();
    const rt = s.types.get(TYPE.route)!;
    if (!sameNames(rn, rt.names)) {
      rt.names = rn;
      request(s, TYPE.route);
    }
  } else {
    for (const x of r.resources) t.got.add(nameOf(x));
    if (r.typeUrl === TYPE.route && s.baseClusters && r.resources.some((x) => x.includes(NEW_SERVICE_HOST))) s.rdsHasNew = true;
    request(s, r.typeUrl);
  }
  if (!s.synced && isSynced(s)) {
    s.synced = true;
    syncedCount++;
  }
  if (watching && !s.changed && s.newClusters && s.rdsHasNew && s.newClusters.every((n) => s.types.get(TYPE.endpoint)!.got.has(n) || !s.types.get(TYPE.endpoint)!.names.includes(n))) {
    s.changed = true;
    changedCount++;
  }
  checkDone();
}

let reported = { synced: false, changed: false };
function checkDone() {
  const failed = sidecars.filter((s) => s.failed).length;
  if (!reported.synced && syncedCount + failed >= sidecars.length) {
    reported.synced = true;
    send({ type: "synced", ms: now() - t0, synced: syncedCount, errors });
  }
  if (watching && !reported.changed && changedCount + failed >= sidecars.length) {
    reported.changed = true;
    send({ type: "changed", ms: now() - tWatch, changed: changedCount, errors });
  }
}

function onData(s: Sidecar, chunk: Buffer) {
  s.pending = s.pending.length === 0 ? chunk : Buffer.concat([s.pending, chunk]);
  while (s.pending.length >= 5) {
    const len = s.pending.readUInt32BE(1);
    if (s.pending.length < 5 + len) break;
    const body = s.pending.subarray(5, 5 + len);
    s.pending = s.pending.subarray(5 + len);
    try {
      onResponse(s, body);
    } catch (err) {
      fail(s, `bad response: ${(err as Error).message}`);
    }
  }
}

function open(port: number, s: Sidecar): Promise<void> {
  return new Promise((resolve) => {
    const session = h2connect(`http://127.0.0.1:${port}`, {
      createConnection: () => netConnect({ host: "127.0.0.1", port, localAddress: sidecarIp(s.i) }),
      settings: { initialWindowSize: WINDOW, enablePush: false },
    });
    s.session = session;
    session.once("connect", () => {
      session.setLocalWindowSize(WINDOW);
      resolve();
    });
    session.on("error", (e) => (fail(s, `session: ${(e as NodeJS.ErrnoException).code ?? e.message}`), resolve()));
    session.on("goaway", () => fail(s, "goaway"));
    const stream = session.request({
      [constants.HTTP2_HEADER_METHOD]: "POST",
      [constants.HTTP2_HEADER_PATH]: PATH,
      "content-type": "application/grpc",
      te: "trailers",
    });
    s.stream = stream;
    stream.on("data", (c: Buffer) => onData(s, c));
    stream.on("trailers", (h) => fail(s, `grpc-status ${h["grpc-status"]} ${h["grpc-message"] ?? ""}`.trim()));
    stream.on("error", (e) => fail(s, `stream: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
    stream.on("close", () => fail(s, "stream closed"));
    request(s, TYPE.cluster, true);
    request(s, TYPE.listener);
  });
}

process.on("message", async (msg: { type: string; port?: number; sidecars?: number; services?: number; changedRoutes?: string[] }) => {
  if (msg.type === "open") {
    servicesCount = msg.services!;
    const empty = (): TypeState => ({ version: "", nonce: "", names: [], got: new Set() });
    sidecars = Array.from({ length: msg.sidecars! }, (_, i) => ({
      i,
      pending: Buffer.alloc(0),
      types: new Map([TYPE.cluster, TYPE.endpoint, TYPE.listener, TYPE.route].map((t) => [t, empty()])),
      synced: false,
      rdsHasNew: false,
      changed: false,
    }));
    t0 = now();
    let next = 0;
    const worker = async () => {
      while (next < sidecars.length) await open(msg.port!, sidecars[next++]!);
    };
    await Promise.all(Array.from({ length: CONNECTING }, worker));
  } else if (msg.type === "watch") {
    // A sidecar that asks for none of the routes B changes (its listeners name others) has nothing to wait for on RDS.
    const changedRoutes = new Set(msg.changedRoutes ?? []);
    for (const s of sidecars) {
      s.baseClusters = new Set(s.types.get(TYPE.cluster)!.got);
      if (!s.types.get(TYPE.route)!.names.some((n) => changedRoutes.has(n))) s.rdsHasNew = true;
    }
    watching = true;
    changedCount = 0;
    tWatch = now();
    send({ type: "watching" });
  } else if (msg.type === "status") {
    const c = (f: (s: Sidecar) => boolean) => sidecars.filter(f).length;
    send({
      type: "status",
      synced: syncedCount,
      changed: changedCount,
      newCluster: c((s) => s.newClusters !== undefined),
      newEds: c((s) => (s.newClusters ?? [""]).every((n) => s.types.get(TYPE.endpoint)!.got.has(n))),
      newRoute: c((s) => s.rdsHasNew),
      errors,
    });
  } else if (msg.type === "close") {
    for (const s of sidecars) s.session?.destroy();
    setTimeout(() => process.exit(0), 100);
  }
});
send({ type: "started" });
