#!/usr/bin/env node
// Runs every test/**/*.test.ts file in its own Node process (through tsx), two at
// a time, and sums uvu's per-file counts. Each file gets a hard time limit, a file
// that crashes or times out counts as a failure, and a run that finds no test at
// all fails: uvu alone exits 0 when it runs nothing.
//
// The last line printed is "N passed, N failed" (read by CI).
// Usage: npm test [-- FILTER…]. A filter matches a test file exactly, by name:
//   serve                 the file stem (test/cli/serve.test.ts, not serve-banner.test.ts),
//                         or a directory segment (cli: test/cli/*, and test/ca/cli.test.ts)
//   test/cli  test/cli/   a directory prefix: every file under it
//   test/cli/serve.test.ts  one file by path (".test.ts" may be left out)
//   serve*                a trailing * matches by substring anywhere in the path
// --list prints the files the filters select, and runs none.
import { spawn, spawnSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { cpus } from "node:os";
import { join, relative, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { matchesFilter } from "./test-filter.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const listOnly = process.argv.includes("--list");
const filters = process.argv.slice(2).filter((a) => a !== "--list");
const perFileTimeoutMs = Number(process.env.TEST_FILE_TIMEOUT_MS ?? 300_000);
const concurrency = Number(process.env.TEST_CONCURRENCY ?? Math.max(1, Math.min(2, cpus().length)));

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

const files = walk(join(root, "test"))
  .map((f) => relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((x) => matchesFilter(f, x)))
  .sort();

if (listOnly) {
  // `npm test -- --list FILTER…`: print the files a run would take, run nothing.
  for (const f of files) console.log(f);
  process.exit(files.length > 0 ? 0 : 1);
}

let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];

// Real Envoy judges what meshkey emits: install it (scripts/install-envoy.sh) when a
// selected test uses it. Under MESHKEY_REQUIRE_ENVOY=1 (CI) a missing or broken Envoy
// fails the run; elsewhere those tests are skipped with one loud line.
const needsEnvoy = files.some((f) => readFileSync(join(root, f), "utf8").includes("support/envoy"));
if (needsEnvoy) {
  const install = spawnSync("bash", [join(root, "scripts/install-envoy.sh")], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const bin = install.status === 0 ? install.stdout.trim() : "";
  const version = bin ? spawnSync(bin, ["--version"], { encoding: "utf8" }) : undefined;
  if (bin && version?.status === 0) {
    console.log(`envoy: ${version.stdout.trim()}`);
    process.env.ENVOY_BIN = bin;
  } else {
    const why = bin ? `${bin} --version failed: ${version?.stderr ?? ""}`.trim() : install.stderr.trim();
    if (process.env.MESHKEY_REQUIRE_ENVOY === "1") {
      console.log(`FAIL envoy: MESHKEY_REQUIRE_ENVOY=1 and Envoy is not usable: ${why}`);
      failed += 1;
      failures.push("(envoy install)");
    } else {
      console.log(`!!! Envoy is not usable (${why}): the real-Envoy tests are SKIPPED. Install it with: bash scripts/install-envoy.sh`);
    }
  }
}

function runFile(file) {
  return new Promise((resolveRun) => {
    const started = Date.now();
    const child = spawn(process.execPath, ["--import", "tsx", file], {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: "0", NODE_ENV: "test" },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => {
      out += `\n[run-tests] ${file}: killed after ${perFileTimeoutMs} ms\n`;
      try { process.kill(-child.pid, "SIGKILL"); } catch { /* already gone */ }
    }, perFileTimeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const total = Number(/Total:\s+(\d+)/.exec(out)?.[1] ?? NaN);
      const ok = Number(/Passed:\s+(\d+)/.exec(out)?.[1] ?? NaN);
      const skip = Number(/Skipped:\s+(\d+)/.exec(out)?.[1] ?? 0);
      let p = 0, f = 0;
      if (Number.isFinite(total) && Number.isFinite(ok)) {
        p = ok;
        f = total - ok - skip;
        if (code !== 0 && f === 0) f = 1; // crashed after its summary (e.g. unhandled rejection)
      } else {
        f = 1; // no summary: the file crashed, hung or ran no uvu suite
      }
      if (p === 0 && f === 0 && skip === 0) f = 1; // a file with zero tests is a mistake
      passed += p;
      failed += f;
      skipped += skip;
      const ms = Date.now() - started;
      const status = f > 0 ? "FAIL" : "ok  ";
      console.log(`${status} ${file}  (${p} passed, ${f} failed, ${ms} ms)`);
      if (f > 0 || process.env.TEST_VERBOSE) {
        failures.push(file);
        console.log(out.split("\n").map((l) => `    ${l}`).join("\n"));
        if (signal) console.log(`    [run-tests] exited on ${signal}`);
      }
      resolveRun();
    });
  });
}

const queue = [...files];
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (queue.length > 0) await runFile(queue.shift());
  }),
);

if (files.length === 0 || passed + failed === 0) {
  console.log("no test files found: a run that tests nothing fails");
  failed = Math.max(failed, 1);
}
if (failures.length) console.log(`failed files: ${failures.join(", ")}`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exitCode = failed > 0 ? 1 : 0;
