// `meshkey demo --envoy` as a user runs it (bin/meshkey.js as a child process):
// four real Envoy sidecars on the sample mesh's pod IPs (127.0.1.x, 127.0.2.x),
// the seeds' four 200 lines, Envoy's /certs, no secret on disk, a refused token,
// rotation under traffic with the same Envoy PIDs, and every Envoy stopped by PID.
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { envoySuite } from "../support/envoy.js";

const test = envoySuite("meshkey demo --envoy");

const SEED_LINES = [
  "sleep.foo to httpbin.foo: 200",
  "sleep.foo to httpbin.bar: 200",
  "sleep.bar to httpbin.foo: 200",
  "sleep.bar to httpbin.bar: 200",
];
const WORKLOADS = ["sleep.foo", "httpbin.foo", "sleep.bar", "httpbin.bar"];

function demo(args: string[], timeoutMs: number) {
  const started = Date.now();
  const r = spawnSync(process.execPath, ["bin/meshkey.js", "demo", "--envoy", ...args], { encoding: "utf8", timeout: timeoutMs });
  return { ...r, ms: Date.now() - started, all: `${r.stdout}\n${r.stderr}` };
}

/** The sidecar table: workload → Envoy PID. */
function sidecarPids(stdout: string): Map<string, number> {
  const pids = new Map<string, number>();
  for (const m of stdout.matchAll(/^ {2}(\S+)\s+pod 127\.0\.\d\.\d\s+inbound .* pid (\d+) {2}admin /gm)) pids.set(m[1]!, Number(m[2]));
  return pids;
}

/** The /certs table: workload → SAN and serial. */
function certLines(stdout: string): Map<string, { san: string; serial: string }> {
  const certs = new Map<string, { san: string; serial: string }>();
  for (const m of stdout.matchAll(/^ {2}(\S+)\s+(spiffe:\/\/\S+)\s+serial ([0-9a-f]+) {2}expires \S+$/gm)) certs.set(m[1]!, { san: m[2]!, serial: m[3]! });
  return certs;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("meshkey demo --envoy: the seeds' four 200 lines through real sidecars, Envoy's /certs, no secret file, a foreign token refused", () => {
  const r = demo([], 90_000);
  assert.is(r.status, 0, r.all);
  const lines = r.stdout.split("\n");
  assert.equal(lines.slice(0, 4), SEED_LINES, r.all);

  const pids = sidecarPids(r.stdout);
  assert.equal([...pids.keys()], WORKLOADS, r.all);
  const certs = certLines(r.stdout);
  for (const w of WORKLOADS) {
    const [app, ns] = w.split(".");
    assert.is(certs.get(w)?.san, `spiffe://cluster.local/ns/${ns}/sa/${app}`, `${w} in /certs\n${r.all}`);
  }
  assert.is(new Set([...certs.values()].map((c) => c.serial)).size, 4, "four distinct certificates");

  assert.match(r.stdout, /with a PEM key or certificate: state\/dev-issuer-key\.pem \(.*\), state\/root-cert\.pem \(.*\), state\/root-key\.pem \(.*\)\n/);
  assert.match(r.stdout, /no workload key or certificate file: 4 Envoys hold theirs in memory only/);

  assert.match(r.stdout, /an Envoy claiming sleep\.foo \(pod 127\.0\.1\.3, pid \d+\) with a token signed by another issuer:/);
  assert.match(r.stdout, /sds\.default\.update_success 0, sds\.default\.update_failure [1-9]\d*; \/certs: 0 certificate\(s\)/);
  assert.match(r.stdout, /StreamSecrets gRPC config stream to unix:\S+ closed: 16, .*\(16 = UNAUTHENTICATED\)/);
  assert.match(r.stdout, /refused: no certificate for a token meshkey does not trust/);
  assert.match(r.stdout, /\ndemo passed\n/);

  const intruder = Number(/pod 127\.0\.1\.3, pid (\d+)\)/.exec(r.stdout)?.[1]);
  for (const pid of [...pids.values(), intruder]) assert.not.ok(alive(pid), `Envoy pid ${pid} still running after the demo`);
});

test("meshkey demo --envoy --rotate: serials change under traffic with 0 non-200 and the same Envoy PIDs, in bounded time", () => {
  const r = demo(["--rotate"], 90_000);
  assert.is(r.status, 0, r.all);
  assert.ok(r.ms < 60_000, `the rotate run took ${r.ms} ms`);
  assert.equal(r.stdout.split("\n").slice(0, 4), SEED_LINES, r.all);
  const pids = sidecarPids(r.stdout);
  const certs = certLines(r.stdout);
  for (const w of WORKLOADS) {
    const m = new RegExp(`^ {2}${w.replace(".", "\\.")}\\s+serial ([0-9a-f → ]+?)  sds\\.default\\.update_success (\\d+) → (\\d+)  pid (\\d+) → (\\d+) `, "m").exec(r.stdout);
    assert.ok(m, `rotation line for ${w}\n${r.all}`);
    const serials = m![1]!.split(" → ");
    assert.ok(serials.length >= 3 && new Set(serials).size === serials.length, `${w}: serials ${serials.join(", ")}`);
    assert.ok(Number(m![3]) >= Number(m![2]) + 2, `${w}: sds.default.update_success ${m![2]} → ${m![3]}`);
    assert.is(Number(m![4]), pids.get(w), `${w}: PID before rotation is the sidecar's`);
    assert.is(Number(m![5]), pids.get(w), `${w}: same PID after rotation`);
    assert.not.equal(serials.at(-1), certs.get(w)?.serial, `${w}: serial changed since /certs`);
  }
  const traffic = /(\d+) requests during rotation, (\d+) non-200/.exec(r.stdout);
  assert.ok(traffic && Number(traffic[1]) > 0, r.all);
  assert.is(traffic![2], "0", r.all);
  assert.match(r.stdout, /rotated under traffic with the same Envoy processes and no failed request/);
  assert.match(r.stdout, /\ndemo passed\n/);
  for (const pid of pids.values()) assert.not.ok(alive(pid), `Envoy pid ${pid} still running after the demo`);
});

test("SIGINT during the rotation stops every Envoy by PID, removes the temp dir and exits 130", async () => {
  const child = spawn(process.execPath, ["bin/meshkey.js", "demo", "--envoy", "--rotate"], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const guard = setTimeout(() => child.kill("SIGKILL"), 90_000);
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (d) => {
      stdout += d;
      if (stdout.includes("rotation under traffic")) resolve();
    });
    child.once("exit", () => reject(new Error(`the demo ended before its rotation\n${stdout}\n${stderr}`)));
  });
  child.kill("SIGINT");
  const code = await exited;
  clearTimeout(guard);
  assert.is(code, 130, `${stdout}\n${stderr}`);
  const pids = sidecarPids(stdout);
  assert.is(pids.size, 4, stdout);
  // The same four PIDs, in whatever order the demo stops them.
  const stopped = /SIGINT: stopping 4 Envoy process\(es\) by PID \(([\d, ]+)\)/.exec(stderr)?.[1];
  assert.ok(stopped, stderr);
  assert.equal(stopped!.split(", ").map(Number).sort(), [...pids.values()].sort());
  for (const pid of pids.values()) assert.not.ok(alive(pid), `Envoy pid ${pid} still running after SIGINT`);
  const dir = /SDS at unix:(\S+)\/sds\/uds_path:/.exec(stdout)?.[1];
  assert.ok(dir, stdout);
  assert.not.ok(existsSync(dir!), `${dir} left behind`);
});

test.run();
