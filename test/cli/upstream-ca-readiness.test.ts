// /readyz of a node agent with --ca-provider istio reflects whether its CA can be reached:
// the CA is another `meshkey serve` process, stopped (SIGKILL, by PID) and started again
// on the same state dir and port.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../support/envoy.js";
import { isolatedServeArgs, startServeProcess, type ServeProcess } from "../support/serve-process.js";

const dir = mkdtempSync(join(tmpdir(), "meshkey-upstream-ready-"));
const started: ServeProcess[] = [];
test.after(async () => {
  for (const p of started) await p.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Readyz {
  status: number;
  checks: Record<string, boolean>;
}
async function readyz(admin: string): Promise<Readyz> {
  const res = await fetch(`http://${admin}/readyz`, { signal: AbortSignal.timeout(2_000) });
  return { status: res.status, checks: ((await res.json()) as { checks: Record<string, boolean> }).checks };
}
async function waitForReadyz(admin: string, status: number, timeoutMs = 15_000): Promise<{ r: Readyz; ms: number }> {
  const t0 = Date.now();
  for (;;) {
    const r = await readyz(admin);
    if (r.status === status) return { r, ms: Date.now() - t0 };
    if (Date.now() - t0 > timeoutMs) throw new Error(`/readyz still ${r.status} after ${timeoutMs} ms: ${JSON.stringify(r.checks)}`);
    await new Promise((res) => setTimeout(res, 100)); // polling interval of a bounded wait
  }
}

test("an agent's /readyz is 503 (upstreamCa false) while its istio CA is down, and 200 again once it is back", async () => {
  const caDir = join(dir, "ca");
  const caPort = await freePort();
  const caArgs = [...isolatedServeArgs(caDir), "--no-sds", "--no-xds", "--ca-listen", `127.0.0.1:${caPort}`];
  let ca = await startServeProcess(caArgs);
  started.push(ca);
  const agent = await startServeProcess([
    ...isolatedServeArgs(join(dir, "agent")),
    "--no-ca", "--no-xds",
    "--ca-provider", "istio",
    "--ca-address", `127.0.0.1:${caPort}`,
    "--ca-root-cert", join(caDir, "state", "root-cert.pem"),
    "--jwks", join(caDir, "state", "jwks.json"),
  ]);
  started.push(agent);

  const up = await waitForReadyz(agent.admin, 200);
  assert.equal(up.r.checks, { sds: true, upstreamCa: true, tokenVerifier: true });

  await ca.stop("SIGKILL");
  const down = await waitForReadyz(agent.admin, 503);
  assert.is(down.r.checks.upstreamCa, false);
  assert.is(down.r.checks.sds, true, "only the upstream CA check fails");
  const metrics = await (await fetch(`http://${agent.admin}/metrics`)).text();
  assert.match(metrics, /^meshkey_sds_upstream_ca_reachable 0$/m);
  assert.match(agent.stderr(), new RegExp(`istio CA 127\\.0\\.0\\.1:${caPort} is unreachable`));

  ca = await startServeProcess(caArgs);
  started.push(ca);
  const back = await waitForReadyz(agent.admin, 200);
  assert.is(back.r.checks.upstreamCa, true);
  console.log(`upstream CA readiness: 503 ${down.ms} ms after the CA was killed, 200 ${back.ms} ms after it was back`);
  assert.ok(down.ms < 8_000 && back.ms < 8_000, "probe every 5 s with a 2 s timeout");
});

test.run();
