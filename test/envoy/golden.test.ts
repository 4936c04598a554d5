// expectGolden: canonical files, semantic comparison, UPDATE_GOLDEN rewrites, orphans.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { create } from "@bufbuild/protobuf";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClusterSchema } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { ListenerSchema } from "../../gen/envoy/config/listener/v3/listener_pb.js";
import { expectGolden, GoldenMismatchError, pruneGoldens } from "../../src/envoy/index.js";

const dir = mkdtempSync(join(tmpdir(), "meshkey-golden-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const cluster = (seconds: bigint) => create(ClusterSchema, { name: "backend", connectTimeout: { seconds } });
const listener = create(ListenerSchema, { name: "l" });

function withUpdate<T>(on: boolean, f: () => T): T {
  const prev = process.env.UPDATE_GOLDEN;
  if (on) process.env.UPDATE_GOLDEN = "1";
  else delete process.env.UPDATE_GOLDEN;
  try {
    return f();
  } finally {
    if (prev === undefined) delete process.env.UPDATE_GOLDEN;
    else process.env.UPDATE_GOLDEN = prev;
  }
}

test("UPDATE_GOLDEN=1 writes canonical JSON; without it the same value passes", () => {
  const f = join(dir, "cluster.json");
  withUpdate(true, () => expectGolden(f, cluster(1n)));
  const text = readFileSync(f, "utf8");
  assert.equal(JSON.parse(text), { "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", name: "backend", connect_timeout: "1s" });
  withUpdate(false, () => expectGolden(f, cluster(1n)));
});

test("a list of messages round-trips through its golden file", () => {
  const f = join(dir, "list.json");
  withUpdate(true, () => expectGolden(f, [cluster(1n), listener]));
  withUpdate(false, () => expectGolden(f, [listener, cluster(1n)])); // order of named resources does not matter
});

test("a mismatch throws with the per-path diff, not the JSON", () => {
  const f = join(dir, "cluster.json");
  try {
    withUpdate(false, () => expectGolden(f, cluster(2n)));
    assert.unreachable("should throw");
  } catch (err) {
    assert.instance(err, GoldenMismatchError);
    assert.match((err as Error).message, /\nCluster\/backend\n {2}connect_timeout: "1s" → "2s"$/);
  }
});

test("a missing golden file is an error telling how to create it", () => {
  assert.throws(() => withUpdate(false, () => expectGolden(join(dir, "none.json"), listener)), /missing: run UPDATE_GOLDEN=1/);
});

test("pruneGoldens lists files no test asked for, and deletes them under UPDATE_GOLDEN=1", () => {
  const orphan = join(dir, "orphan.json");
  writeFileSync(orphan, "{}");
  assert.equal(withUpdate(false, () => pruneGoldens(dir)), ["orphan.json"]);
  assert.ok(existsSync(orphan));
  assert.equal(withUpdate(true, () => pruneGoldens(dir)), ["orphan.json"]);
  assert.not.ok(existsSync(orphan));
});

test.run();
