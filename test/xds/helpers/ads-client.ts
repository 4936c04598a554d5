// Test helpers: a real xDS server + cache on 127.0.0.1:0, a connect-node ADS client
// whose streams are driven step by step, and tiny snapshots of named clusters.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Registry } from "prom-client";
import { ClusterSchema } from "../../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { ClusterLoadAssignmentSchema } from "../../../gen/envoy/config/endpoint/v3/endpoint_pb.js";
import { ListenerSchema } from "../../../gen/envoy/config/listener/v3/listener_pb.js";
import { RouteConfigurationSchema } from "../../../gen/envoy/config/route/v3/route_pb.js";
import { AggregatedDiscoveryService } from "../../../gen/envoy/service/discovery/v3/ads_pb.js";
import type {
  DeltaDiscoveryRequestSchema,
  DeltaDiscoveryResponse,
  DiscoveryRequestSchema,
  DiscoveryResponse,
} from "../../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { ClientStatusDiscoveryService } from "../../../gen/envoy/service/status/v3/csds_pb.js";
import {
  cacheResource,
  createSnapshot,
  createSnapshotCache,
  startXdsServer,
  TypeUrl,
  type RunningXdsServer,
  type Snapshot,
  type SnapshotCache,
} from "../../../src/xds/index.js";

export { TypeUrl };

/** A stream whose responses are collected in the background and read one at a time. */
export class TestStream<Req, Res> {
  readonly input = createWritableIterable<Req>();
  private readonly received: Res[] = [];
  private read = 0;
  private waiter: (() => void) | undefined;
  error: unknown;
  ended = false;

  constructor(open: (input: AsyncIterable<Req>) => AsyncIterable<Res>) {
    void (async () => {
      try {
        for await (const r of open(this.input)) {
          this.received.push(r);
          this.waiter?.();
        }
      } catch (err) {
        this.error = err;
      } finally {
        this.ended = true;
        this.waiter?.();
      }
    })();
  }

  send(req: Req): Promise<void> {
    return this.input.write(req);
  }

  /** The next response (fails after `ms`). */
  async next(ms = 3000): Promise<Res> {
    const end = Date.now() + ms;
    while (this.read >= this.received.length) {
      if (this.ended) throw new Error(`stream ended: ${String(this.error)}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error("no response in time");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => (clearTimeout(t), resolve());
      });
    }
    return this.received[this.read++]!;
  }

  /** Asserts that nothing arrives within `ms`. */
  async nothing(ms = 300): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    if (this.received.length > this.read) throw new Error(`unexpected response: ${JSON.stringify(this.received[this.read], (_k, v) => (typeof v === "bigint" ? String(v) : v instanceof Uint8Array ? "<bytes>" : v))}`);
  }

  /** Waits for the stream to fail and returns the error. */
  async failure(ms = 3000): Promise<unknown> {
    const end = Date.now() + ms;
    while (!this.ended && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    return this.error;
  }

  close() {
    this.input.close();
  }
}

export type SotwStream = TestStream<MessageInitShape<typeof DiscoveryRequestSchema>, DiscoveryResponse>;
export type DeltaStream = TestStream<MessageInitShape<typeof DeltaDiscoveryRequestSchema>, DeltaDiscoveryResponse>;

export interface Harness {
  cache: SnapshotCache;
  server: RunningXdsServer;
  ads: Client<typeof AggregatedDiscoveryService>;
  csds: Client<typeof ClientStatusDiscoveryService>;
  sotw(): SotwStream;
  delta(): DeltaStream;
  close(): Promise<void>;
}

export async function startHarness(cache: SnapshotCache = createSnapshotCache(), registry?: Registry): Promise<Harness> {
  const server = await startXdsServer({ listen: { host: "127.0.0.1", port: 0 }, cache, ...(registry ? { registry } : {}) });
  const transport = createGrpcTransport({ baseUrl: `http://${server.address}` });
  const ads = createClient(AggregatedDiscoveryService, transport);
  const csds = createClient(ClientStatusDiscoveryService, transport);
  const streams: Array<TestStream<unknown, unknown>> = [];
  return {
    cache,
    server,
    ads,
    csds,
    sotw() {
      const s: SotwStream = new TestStream((input: AsyncIterable<MessageInitShape<typeof DiscoveryRequestSchema>>) => ads.streamAggregatedResources(input));
      streams.push(s as unknown as TestStream<unknown, unknown>);
      return s;
    },
    delta() {
      const s: DeltaStream = new TestStream((input: AsyncIterable<MessageInitShape<typeof DeltaDiscoveryRequestSchema>>) => ads.deltaAggregatedResources(input));
      streams.push(s as unknown as TestStream<unknown, unknown>);
      return s;
    },
    async close() {
      for (const s of streams) s.close();
      await server.close(500);
    },
  };
}

/**
 * A snapshot from a compact spec: { CDS: {a: "1", b: "1"} } → clusters a and b whose
 * contents depend on the given tag (so changing the tag changes the resource version).
 */
export function snap(spec: Partial<Record<"CDS" | "EDS" | "LDS" | "RDS", Record<string, string>>>): Snapshot {
  const rs = [];
  for (const [name, tag] of Object.entries(spec.CDS ?? {})) rs.push(cacheResource(ClusterSchema, name, create(ClusterSchema, { name, altStatName: tag })));
  for (const [name, tag] of Object.entries(spec.EDS ?? {})) rs.push(cacheResource(ClusterLoadAssignmentSchema, name, create(ClusterLoadAssignmentSchema, { clusterName: name, namedEndpoints: { [tag]: {} } })));
  for (const [name, tag] of Object.entries(spec.LDS ?? {})) rs.push(cacheResource(ListenerSchema, name, create(ListenerSchema, { name, statPrefix: tag })));
  for (const [name, tag] of Object.entries(spec.RDS ?? {})) rs.push(cacheResource(RouteConfigurationSchema, name, create(RouteConfigurationSchema, { name, internalOnlyHeaders: [tag] })));
  return createSnapshot(rs, [TypeUrl.Cluster, TypeUrl.Endpoint, TypeUrl.Listener, TypeUrl.Route]);
}

export const node = (id = "test-node") => ({ id });

/** Names of the resources of a SotW response (unpacked by name from the snapshot's Any). */
export function namesOf(res: DiscoveryResponse, sn: Snapshot): string[] {
  const t = sn.get(res.typeUrl);
  const byAny = new Map([...(t?.resources.values() ?? [])].map((r) => [Buffer.from(r.any.value).toString("hex"), r.name]));
  return res.resources.map((a) => byAny.get(Buffer.from(a.value).toString("hex")) ?? "?");
}
