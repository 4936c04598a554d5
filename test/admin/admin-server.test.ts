// The admin server answers health, readiness, metrics and debug pages over real HTTP.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Counter, Registry } from "prom-client";
import { startAdminServer, DebugPageError, type ReadinessReport } from "../../src/admin/index.js";

async function withAdmin(
  readiness: () => ReadinessReport,
  fn: (base: string, admin: Awaited<ReturnType<typeof startAdminServer>>, registry: Registry) => Promise<void>,
) {
  const registry = new Registry();
  const admin = await startAdminServer({
    listen: { host: "127.0.0.1", port: 0 },
    registry,
    readiness,
    debugPages: {
      echo: (q) => ({ node: q.get("node"), big: 5n }),
      missing: (q) => {
        throw new DebugPageError(`unknown node "${q.get("node")}"`);
      },
    },
  });
  try {
    await fn(`http://${admin.address}`, admin, registry);
  } finally {
    await admin.close();
  }
}

test("/healthz answers 200 while the process lives", async () => {
  await withAdmin(
    () => ({ ready: false, checks: {} }),
    async (base) => {
      const r = await fetch(`${base}/healthz`);
      assert.is(r.status, 200);
    },
  );
});

test("/readyz is 503 until every check passes, then 200, then 503 once draining", async () => {
  let checks = { ca: true, sds: false };
  await withAdmin(
    () => ({ ready: Object.values(checks).every(Boolean), checks }),
    async (base, admin) => {
      let r = await fetch(`${base}/readyz`);
      assert.is(r.status, 503);
      assert.equal(((await r.json()) as { checks: unknown }).checks, { ca: true, sds: false });
      checks = { ca: true, sds: true };
      r = await fetch(`${base}/readyz`);
      assert.is(r.status, 200);
      admin.setDraining();
      r = await fetch(`${base}/readyz`);
      assert.is(r.status, 503);
      assert.is(((await r.json()) as { draining: boolean }).draining, true);
    },
  );
});

test("/metrics serves the registry in Prometheus text format", async () => {
  await withAdmin(
    () => ({ ready: true, checks: {} }),
    async (base, _admin, registry) => {
      new Counter({ name: "meshkey_test_total", help: "test counter", registers: [registry] }).inc(3);
      const r = await fetch(`${base}/metrics`);
      assert.is(r.status, 200);
      assert.match(await r.text(), /^meshkey_test_total 3$/m);
    },
  );
});

test("debug pages get the query and may answer 404 with a reason", async () => {
  await withAdmin(
    () => ({ ready: true, checks: {} }),
    async (base) => {
      let r = await fetch(`${base}/debug/echo?node=n1`);
      assert.equal(await r.json(), { node: "n1", big: "5" });
      r = await fetch(`${base}/debug/missing?node=zz`);
      assert.is(r.status, 404);
      assert.match(((await r.json()) as { error: string }).error, /unknown node "zz"/);
      r = await fetch(`${base}/debug/nope`);
      assert.is(r.status, 404);
    },
  );
});

test.run();
