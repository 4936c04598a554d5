#!/usr/bin/env node
// Regenerates gen/ with `buf generate` (protoc-gen-es, target ts).
//
// The Envoy, xds, googleapis and PGV protos come from the pinned npm package
// @grpc/grpc-js-xds (its deps/ folder). They are staged in a temporary workspace,
// never committed. That package's validate.proto predates StringRules.ignore_empty
// (field 26), which Envoy's protos use, so the staged copy is patched here.
//
// Usage: node scripts/gen.mjs [--out DIR]   (default: ./gen, replaced in place)
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const outArg = process.argv.indexOf("--out");
const outDir = outArg > 0 ? resolve(process.argv[outArg + 1]) : join(root, "gen");

const require = createRequire(join(root, "package.json"));
const xdsPkg = dirname(require.resolve("@grpc/grpc-js-xds/package.json"));
const deps = join(xdsPkg, "deps");

const work = mkdtempSync(join(tmpdir(), "meshkey-gen-"));
try {
  for (const f of ["buf.yaml", "buf.gen.yaml"]) cpSync(join(root, f), join(work, f));
  cpSync(join(root, "proto"), join(work, "proto"), { recursive: true });
  const staged = join(work, ".protos");
  cpSync(join(deps, "envoy-api"), join(staged, "envoy-api"), { recursive: true });
  cpSync(join(deps, "xds"), join(staged, "xds"), { recursive: true });
  cpSync(join(deps, "googleapis"), join(staged, "googleapis"), { recursive: true });
  cpSync(join(deps, "protoc-gen-validate", "validate"), join(staged, "validate", "validate"), { recursive: true });
  patchValidateProto(join(staged, "validate", "validate", "validate.proto"));

  const buf = join(dirname(require.resolve("@bufbuild/buf/package.json")), "bin", "buf");
  const pluginBin = join(root, "node_modules", ".bin");
  const r = spawnSync(buf, ["generate"], {
    cwd: work,
    stdio: "inherit",
    env: { ...process.env, PATH: `${pluginBin}:${process.env.PATH}` },
  });
  if (r.status !== 0) {
    console.error(`buf generate failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
  rmSync(outDir, { recursive: true, force: true });
  cpSync(join(work, "gen"), outDir, { recursive: true });
  console.error(`generated ${outDir}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

/** Adds `optional bool ignore_empty = 26;` to StringRules unless it is already there. */
function patchValidateProto(file) {
  const text = readFileSync(file, "utf8");
  const start = text.indexOf("message StringRules {");
  if (start < 0) throw new Error(`${file}: message StringRules not found`);
  // StringRules holds a oneof, so its own closing brace is the first "\n}" at column 0.
  const end = text.indexOf("\n}", start);
  const body = text.slice(start, end);
  if (/\bignore_empty\s*=\s*26\b/.test(body)) return;
  const patched =
    text.slice(0, end) +
    "\n\n    // Added by meshkey's gen script: newer PGV field used by Envoy's protos.\n    optional bool ignore_empty = 26;" +
    text.slice(end);
  writeFileSync(file, patched);
  if (!existsSync(file)) throw new Error("patch failed");
}
