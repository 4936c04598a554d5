// gen/ is committed; it must be exactly what `npm run gen` produces today.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listFiles(p));
    else out.push(p);
  }
  return out;
}

test("committed gen/ matches a fresh buf generate", () => {
  const tmp = mkdtempSync(join(tmpdir(), "meshkey-gen-check-"));
  try {
    const out = join(tmp, "gen");
    const r = spawnSync(process.execPath, ["scripts/gen.mjs", "--out", out], { encoding: "utf8" });
    assert.is(r.status, 0, r.stderr);
    const fresh = listFiles(out).map((f) => relative(out, f)).sort();
    const committed = listFiles("gen").map((f) => relative("gen", f)).sort();
    assert.equal(committed, fresh, "gen/ has different files: run `npm run gen`");
    for (const f of fresh) {
      const same = readFileSync(join(out, f), "utf8") === readFileSync(join("gen", f), "utf8");
      assert.ok(same, `gen/${f} is stale: run \`npm run gen\``);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("the patched PGV StringRules carries ignore_empty = 26", async () => {
  const { StringRulesSchema } = await import("../../gen/validate/validate_pb.js");
  const field = StringRulesSchema.fields.find((f) => f.number === 26);
  assert.is(field?.name, "ignore_empty");
});

test("Istio CA API has the published field numbers", async () => {
  const m = await import("../../gen/istio/v1/auth/ca_pb.js");
  const numbers = Object.fromEntries(m.IstioCertificateRequestSchema.fields.map((f) => [f.name, f.number]));
  assert.equal(numbers, { csr: 1, subject_id: 2, validity_duration: 3, metadata: 4 });
  assert.is(m.IstioCertificateResponseSchema.fields[0]?.number, 1);
  assert.is(m.IstioCertificateService.typeName, "istio.v1.auth.IstioCertificateService");
});

test.run();
