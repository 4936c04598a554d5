// ADS with real Envoy: a mesh edit reaches running sidecars and carries traffic; a
// resource Envoy refuses is NACKed once, shown in CSDS and /debug/syncz with Envoy's
// own error, never resent, while the last good config keeps serving; and Envoy keeps
// serving through a meshkey restart (SIGTERM and SIGKILL) and re-syncs afterwards.
import { createServer, type Server } from "node:net";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { ClientStatusDiscoveryService, ConfigStatus, type ClientStatusResponse } from "../../gen/envoy/service/status/v3/csds_pb.js";
import { ClientResourceStatus } from "../../gen/envoy/admin/v3/config_dump_shared_pb.js";
import { envoySuite, freePort, type EnvoyProcess } from "../support/envoy.js";
import { createMeshWorld, startTrafficPair, httpGet, waitForSidecarSynced, type MeshWorld, type Sidecar, type Workload } from "../support/mesh-world.js";

const test = envoySuite("ads");

const LDS = "type.googleapis.com/envoy.config.listener.v3.Listener";

let world: MeshWorld;
let sleep: Sidecar;
let httpbin: Sidecar;
let echo: Sidecar | undefined;
/** The mesh every test starts from (test 1 adds echo to it). */
let serving: Workload[];

interface SyncType {
  typeUrl: string;
  versionSent: string;
  nonceSent: string;
  versionAcked: string;
  responses: number;
  lastNack: { version: string; nonce: string; message: string } | null;
}
interface SyncNode {
  nodeId: string;
  types: SyncType[];
}

async function syncz(): Promise<SyncNode[]> {
  const res = await fetch(`http://${world.serve.admin}/debug/syncz`, { signal: AbortSignal.timeout(5_000) });
  return (await res.json()) as SyncNode[];
}
async function syncType(nodeId: string, typeUrl: string): Promise<SyncType | undefined> {
  return (await syncz()).find((n) => n.nodeId === nodeId)?.types.find((t) => t.typeUrl === typeUrl);
}

async function csds(nodeId: string): Promise<ClientStatusResponse> {
  const client = createClient(ClientStatusDiscoveryService, createGrpcTransport({ baseUrl: `http://${world.serve.xds}` }));
  return client.fetchClientStatus({ node: { id: nodeId } }, { signal: AbortSignal.timeout(5_000) });
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://${world.serve.admin}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

/** Responses Envoy took for a subscription: each is either applied or rejected. */
async function ldsResponses(envoy: EnvoyProcess): Promise<number> {
  return (await envoy.stat("listener_manager.lds.update_success")) + (await envoy.stat("listener_manager.lds.update_rejected"));
}

/** Names and addresses of the listeners Envoy is running. */
async function listeners(envoy: EnvoyProcess): Promise<string[]> {
  const { body } = await envoy.admin("/listeners?format=json");
  const parsed = JSON.parse(body) as { listener_statuses: Array<{ name: string; local_address?: { socket_address?: { address: string; port_value: number } } }> };
  return parsed.listener_statuses
    .map((l) => `${l.name}@${l.local_address?.socket_address?.address}:${l.local_address?.socket_address?.port_value}`)
    .sort();
}

/** Polls for `ms` (bounded) and fails as soon as `check` says the invariant broke. */
async function holdsFor(what: string, ms: number, check: () => Promise<string | undefined>): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const broken = await check();
    if (broken !== undefined) assert.unreachable(`${what}: ${broken}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const through = (from: Sidecar, port: number, host: string) => httpGet(from.workload.podIp, port, host);

test.before(async () => {
  world = await createMeshWorld({ subnet: 61 });
  const sleepW = await world.workload({ name: "sleep", namespace: "foo", port: 80 });
  const httpbinW = await world.workload({ name: "httpbin", namespace: "bar" });
  serving = [sleepW, httpbinW];
  world.writeMesh(serving);
  ({ client: sleep, server: httpbin } = await startTrafficPair(world, sleepW, httpbinW));
});

test.after(async () => {
  await world?.close();
});

test("a new service in the mesh file reaches the running Envoy and carries traffic", async () => {
  const cdsBefore = await sleep.envoy.stat("cluster_manager.cds.update_success");
  const echoW = await world.workload({ name: "echo", namespace: "baz", port: 9080 });
  await world.startApp(echoW);
  serving = [...serving, echoW];
  world.writeMesh(serving);
  const cluster = "outbound|9080||echo.baz.svc.cluster.local";
  await sleep.envoy.waitForStat("cluster_manager.cds.update_success", (v) => v > cdsBefore);
  await sleep.envoy.waitFor(`${cluster} in /clusters`, async () => (await sleep.envoy.admin("/clusters")).body.includes(cluster));
  const dump = await sleep.envoy.configDump("?resource=dynamic_active_clusters");
  assert.match(JSON.stringify(dump), cluster);
  // The new port 9080 is a new outbound listener on the existing sidecar.
  await sleep.envoy.waitFor("the outbound listener for port 9080", async () => (await listeners(sleep.envoy)).some((l) => l.endsWith(`${sleep.workload.podIp}:9080`)));

  echo = await world.startSidecar(echoW);
  await waitForSidecarSynced(echo.envoy);
  const res = await sleep.envoy.waitFor("a 200 from echo.baz through the sidecars", async () => {
    const r = await through(sleep, 9080, "echo.baz.svc.cluster.local:9080");
    return r.status === 200 ? r : undefined;
  });
  assert.is(JSON.parse(res.body).service, "echo.baz");
  assert.is(await sleep.envoy.stat("cluster_manager.cds.update_rejected"), 0);
  assert.is(await sleep.envoy.stat("listener_manager.lds.update_rejected"), 0);
});

test("a listener Envoy cannot bind is NACKed once, reported with Envoy's error, not resent, and the last good config keeps serving", async () => {
  // A port another process holds on httpbin's pod IP: the mesh is valid, but the outbound
  // listener every sidecar gets for the new service's port cannot bind on httpbin's host.
  const podIp = httpbin.workload.podIp;
  const taken = await freePort(podIp);
  const blocker: Server = createServer();
  await new Promise<void>((r) => blocker.listen(taken, podIp, r));
  try {
    const nodeId = httpbin.workload.nodeId;
    const listenersBefore = await listeners(httpbin.envoy);
    const rejectedBefore = await httpbin.envoy.stat("listener_manager.lds.update_rejected");
    const responsesBefore = await ldsResponses(httpbin.envoy);
    const before = (await syncType(nodeId, LDS))!;
    const goodVersion = before.versionAcked;

    const blocked = { ...httpbin.workload, name: "blocked", serviceAccount: "blocked", port: taken };
    world.writeMesh([...serving, blocked]);
    await httpbin.envoy.waitForStat("listener_manager.lds.update_rejected", (v) => v === rejectedBefore + 1);
    // The other sidecars took the same change.
    await sleep.envoy.waitFor("sleep's listener on the new port", async () => (await listeners(sleep.envoy)).some((l) => l.endsWith(`:${taken}`)));
    assert.is(await sleep.envoy.stat("listener_manager.lds.update_rejected"), 0);

    // Envoy's own words for the failure (its config dump's error_state) …
    const envoyError = await httpbin.envoy.waitFor("the rejected listener's error_state in /config_dump", async () => {
      const dump = await httpbin.envoy.configDump("?resource=dynamic_listeners");
      const failed = (dump.configs as Array<{ name?: string; error_state?: { details?: string } }>).find((l) => l.error_state?.details);
      return failed?.error_state?.details;
    });
    assert.match(envoyError, String(taken));

    // … are what meshkey's syncz and CSDS show for that node and type.
    const st = await httpbin.envoy.waitFor("syncz to show the NACK", async () => {
      const t = await syncType(nodeId, LDS);
      return t?.lastNack && t.lastNack.version === t.versionSent ? t : undefined;
    });
    assert.ok(st.lastNack!.message.includes(envoyError), `syncz: ${st.lastNack!.message} — Envoy: ${envoyError}`);
    assert.is(st.versionAcked, goodVersion, "the ACKed version stays the last good one");
    const status = await csds(nodeId);
    assert.is(status.config.length, 1);
    const ldsEntries = status.config[0]!.genericXdsConfigs.filter((g) => g.typeUrl === LDS);
    assert.ok(ldsEntries.length > 0);
    for (const g of ldsEntries) {
      assert.is(g.configStatus, ConfigStatus.ERROR, g.name);
      assert.is(g.clientStatus, ClientResourceStatus.NACKED, g.name);
      assert.ok(g.errorState?.details.includes(envoyError), `CSDS ${g.name}: ${g.errorState?.details}`);
      assert.is(g.errorState?.versionInfo, st.versionSent);
    }

    // Exactly one push of the rejected version, also when the same mesh is published again
    // (the file rewritten in another order: a new reload, the same snapshots).
    assert.is((await ldsResponses(httpbin.envoy)) - responsesBefore, 1, "LDS responses Envoy received");
    assert.is(st.responses - before.responses, 1, "LDS responses meshkey sent the node");
    const reloads = await metric("meshkey_mesh_reloads_total", 'result="ok"');
    world.writeMesh([blocked, ...serving]);
    await httpbin.envoy.waitFor("meshkey to reload the rewritten mesh", async () => (await metric("meshkey_mesh_reloads_total", 'result="ok"')) > reloads);
    await holdsFor("no resend of the NACKed version", 3_000, async () => {
      const n = (await ldsResponses(httpbin.envoy)) - responsesBefore;
      if (n !== 1) return `Envoy received ${n} LDS responses`;
      const t = await syncType(nodeId, LDS);
      if (t?.nonceSent !== st.nonceSent) return `meshkey sent LDS again (nonce ${st.nonceSent} → ${t?.nonceSent})`;
      if (t.responses !== st.responses) return `meshkey's LDS responses to the node ${st.responses} → ${t.responses}`;
      return undefined;
    });
    assert.is(await httpbin.envoy.stat("listener_manager.lds.update_rejected"), rejectedBefore + 1);

    // The last good config keeps serving.
    assert.equal(await listeners(httpbin.envoy), listenersBefore);
    assert.is((await through(sleep, 8000, "httpbin.bar:8000")).status, 200);
    assert.is((await through(httpbin, 9080, "echo.baz:9080")).status, 200);
  } finally {
    await new Promise((r) => blocker.close(r));
  }

  // Back to a mesh Envoy accepts: the next version is ACKed and CSDS is SYNCED again.
  const ackedBefore = await httpbin.envoy.stat("listener_manager.lds.update_success");
  world.writeMesh(serving);
  await httpbin.envoy.waitForStat("listener_manager.lds.update_success", (v) => v > ackedBefore);
  const status = await httpbin.envoy.waitFor("CSDS SYNCED for httpbin's listeners", async () => {
    const s = await csds(httpbin.workload.nodeId);
    const l = s.config[0]?.genericXdsConfigs.filter((g) => g.typeUrl === LDS) ?? [];
    return l.length > 0 && l.every((g) => g.configStatus === ConfigStatus.SYNCED) ? l : undefined;
  });
  for (const g of status) assert.is(g.errorState, undefined, `a stale error on ${g.name}: ${g.errorState?.details}`);
});

for (const signal of ["SIGTERM", "SIGKILL"] as const) {
  test(`Envoy keeps serving while meshkey restarts (${signal}) and re-syncs after`, async () => {
    const ldsBefore = await sleep.envoy.stat("listener_manager.lds.update_success");
    const cdsBefore = await sleep.envoy.stat("cluster_manager.cds.update_success");
    const versionBefore = (await syncType(sleep.workload.nodeId, LDS))!.versionAcked;
    const failures: string[] = [];
    let during = 0;
    let total = 0;
    let phase = "before" as "before" | "down" | "after";
    let stop = false;
    const loop = (async () => {
      // Bounded in count and time; paced so that it spans the whole restart.
      const deadline = Date.now() + 60_000;
      while (!stop && total < 3_000 && Date.now() < deadline) {
        const r = await through(sleep, 8000, "httpbin.bar:8000").then(
          (x) => (x.status === 200 ? "" : `status ${x.status}`),
          (e: Error) => e.message,
        );
        total++;
        if (phase === "down") during++;
        if (r !== "") failures.push(`${phase}: ${r}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    try {
      await sleep.envoy.waitFor("some traffic first", async () => total >= 5);
      phase = "down";
      await world.restartServe(signal);
      phase = "after";
      for (const sc of [sleep, httpbin, ...(echo ? [echo] : [])]) {
        await sc.envoy.waitForStat("control_plane.connected_state", (v) => v === 1, 30_000);
      }
      await sleep.envoy.waitForStat("listener_manager.lds.update_success", (v) => v > ldsBefore, 30_000);
      await sleep.envoy.waitForStat("cluster_manager.cds.update_success", (v) => v > cdsBefore, 30_000);
      const t = await sleep.envoy.waitFor("meshkey to see sleep's LDS ACK", async () => {
        const x = await syncType(sleep.workload.nodeId, LDS);
        return x && x.versionSent !== "" && x.versionAcked === x.versionSent ? x : undefined;
      });
      // The last LDS version Envoy applied is the one meshkey sent (and it did not change: same mesh).
      const dump = await sleep.envoy.configDump();
      const lds = dump.configs.find((c) => c["@type"].endsWith("ListenersConfigDump")) as { version_info?: string } | undefined;
      assert.is(lds?.version_info, t.versionSent, "Envoy's LDS version is meshkey's");
      assert.is(t.versionSent, versionBefore, "the same mesh gives the same version after the restart");
      const after = total;
      await sleep.envoy.waitFor("traffic after the restart", async () => total >= after + 5);
    } finally {
      stop = true;
      await loop;
    }
    assert.ok(during > 0, "requests were made while meshkey was down");
    assert.equal(failures, [], `${failures.length} of ${total} requests failed`);
  });
}

test.run();
