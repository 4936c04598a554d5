// Each folder of src/ is a part whose index.ts is its whole public API: a file of one
// part may import another part only through ../<other>/index.js, never its inner files.
// src/spiffe (the wire contract) depends on no other part.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import ts from "typescript";

const SRC = resolve("src");
const SOURCE = /\.(ts|mts|mjs|js)$/;

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listFiles(p));
    else if (SOURCE.test(name)) out.push(p);
  }
  return out;
}

/** The part (first folder under src/) a path is in, or undefined outside src/. */
function partOf(path: string): string | undefined {
  const rel = relative(SRC, path);
  if (rel.startsWith("..") || !rel.includes(sep)) return undefined;
  return rel.split(sep)[0];
}

/** Every module specifier of a file: static imports, re-exports, import() and import types. */
function specifiers(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
}

/** What is wrong with `file` importing `spec` (undefined when the import keeps to the rules). */
function violation(file: string, spec: string): string | undefined {
  if (!spec.startsWith(".")) return undefined;
  const from = partOf(file);
  const target = resolve(dirname(file), spec);
  const to = partOf(target);
  if (from === undefined || to === undefined || from === to) return undefined;
  const where = `${relative(SRC, file)} imports "${spec}"`;
  if (from === "spiffe") return `${where}: src/spiffe depends on no other part`;
  if (target !== join(SRC, to, "index.js") && target !== join(SRC, to, "index.ts")) {
    return `${where}: another part's inner file (import ../${to}/index.js)`;
  }
  return undefined;
}

const cases: Array<{ name: string; file: string; spec: string; ok: boolean }> = [
  { name: "another part through its index", file: "sds/sds-server.ts", spec: "../ca/index.js", ok: true },
  { name: "a file of the same part", file: "sds/sds-server.ts", spec: "./secret-cache.js", ok: true },
  { name: "a nested file reaching up inside its part", file: "mesh/translate/tls.ts", spec: "../model.js", ok: true },
  { name: "a nested file to another part's index", file: "xds/server/node-identity.ts", spec: "../../mesh/index.js", ok: true },
  { name: "generated code", file: "xds/server/sotw.ts", spec: "../../../gen/envoy/service/discovery/v3/discovery_pb.js", ok: true },
  { name: "a package", file: "sds/sds-server.ts", spec: "@connectrpc/connect", ok: true },
  { name: "another part's inner file", file: "sds/secret-cache.ts", spec: "../ca/identity.js", ok: false },
  { name: "another part's nested inner file", file: "xds/render-mesh.ts", spec: "../mesh/translate/consistency.js", ok: false },
  { name: "the contract importing a part", file: "spiffe/spiffe-id.ts", spec: "../ca/index.js", ok: false },
];
for (const c of cases) {
  test(`boundary rule: ${c.name} is ${c.ok ? "allowed" : "refused"}`, () => {
    assert.is(violation(join(SRC, c.file), c.spec) === undefined, c.ok);
  });
}

test("the scanner sees static imports, re-exports, import() and import types", () => {
  const text = [
    'import { a } from "../x/a.js";',
    'export { b } from "../x/b.js";',
    'const c = await import("../x/c.js");',
    'type D = import("../x/d.js").D;',
  ].join("\n");
  assert.equal(specifiers(text), ["../x/a.js", "../x/b.js", "../x/c.js", "../x/d.js"]);
});

test("no file in src/<part>/ imports another part's inner file", () => {
  const files = listFiles(SRC);
  assert.ok(files.length > 50, `only ${files.length} source files found under src/`);
  const problems: string[] = [];
  for (const file of files) {
    for (const spec of specifiers(readFileSync(file, "utf8"))) {
      const v = violation(file, spec);
      if (v !== undefined) problems.push(v);
    }
  }
  assert.equal(problems, [], problems.join("\n"));
});

test("every part but the CLI (the application: bin/meshkey.js → src/cli/main.ts) has an index.ts", () => {
  const parts = readdirSync(SRC).filter((d) => d !== "cli" && statSync(join(SRC, d)).isDirectory());
  const missing = parts.filter((p) => !statSync(join(SRC, p, "index.ts"), { throwIfNoEntry: false }));
  assert.equal(missing, []);
});

test.run();
