// Without permission to create /var/run/sds, `meshkey serve` on defaults puts the
// socket in <state-dir>-sds/ (its own directory, 0755, outside the 0700 state dir)
// and says so, instead of failing. First as root with a read-only /run (a private
// mount namespace), then as a real non-root agent (nobody) whose socket a client
// of a third uid reaches and gets a certificate from.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { chmodSync, chownSync, lstatSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { spawn, spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { exitWithin, mountNamespaceUnavailable, spawnRaw, tempDir } from "../reliability/support/fault-helpers.js";

const dirs: string[] = [];
test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const unavailable = mountNamespaceUnavailable();

test("the default SDS socket falls back to <state-dir>-sds/uds_path when /var/run/sds cannot be created", async () => {
  if (unavailable) {
    console.log(`skipped: ${unavailable}`);
    return;
  }
  const dir = tempDir("meshkey-fallback-", dirs);
  const stateDir = join(dir, "state");
  const serve = [
    process.execPath, resolve("bin/meshkey.js"), "serve",
    "--state-dir", stateDir,
    "--xds-listen", "127.0.0.1:0", "--ca-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
  ].map((a) => `'${a}'`).join(" ");
  const c = spawnRaw(["-m", "sh", "-c", `mount -t tmpfs -o ro tmpfs /run && exec ${serve}`], "unshare");
  try {
    // 20 s, as startServeProcess allows: a start under a loaded machine (parallel test files) can take over 10 s.
    for (let i = 0; i < 400 && !/^  admin\s/m.test(c.out()) && c.child.exitCode === null; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(c.out(), new RegExp(`^  SDS\\s+unix:${join(`${stateDir}-sds`, "uds_path").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"), `${c.out()}\n${c.err()}`);
    assert.match(c.err(), /falling back to .*-sds \(mode 0755: only this agent may write there\)/);
    const st = lstatSync(`${stateDir}-sds`);
    assert.ok(st.isDirectory() && !st.isSymbolicLink());
    assert.is((st.mode & 0o777).toString(8), "755");
  } finally {
    c.child.kill("SIGTERM");
    const r = await exitWithin(c, 15_000);
    assert.is(r.code, 0, c.err());
  }
});

/** uid of a local user, from getent. */
function uidOf(user: string): number | undefined {
  const r = spawnSync("getent", ["passwd", user], { encoding: "utf8" });
  const uid = r.status === 0 ? Number(r.stdout.split(":")[2]) : NaN;
  return Number.isInteger(uid) ? uid : undefined;
}

/** A second non-root user (not nobody) to act as the Envoy's uid. */
function clientUser(): string | undefined {
  const r = spawnSync("getent", ["passwd"], { encoding: "utf8" });
  for (const line of r.stdout?.split("\n") ?? []) {
    const [name, , uid] = line.split(":");
    if (name && Number(uid) >= 1000 && Number(uid) < 65534) return name;
  }
  return undefined;
}

function nonRootUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "not root: cannot run the agent as another user";
  if (spawnSync("runuser", ["--help"]).error) return "runuser is not available";
  if (uidOf("nobody") === undefined) return "no user nobody";
  if (!clientUser()) return "no second non-root user to run the client as";
  // The agent runs as nobody from this checkout: a clone under a 0700 directory is out of its reach.
  if (spawnSync("runuser", ["-u", "nobody", "--", "test", "-r", resolve("bin/meshkey.js")]).status !== 0) {
    return `user nobody cannot read ${resolve("bin/meshkey.js")} (a parent directory is not world-searchable)`;
  }
  return undefined;
}

const noNonRoot = nonRootUnavailable();

test("a non-root agent (nobody) serves its fallback socket from a 0755 directory of its own, and an Envoy-side client of another uid gets a certificate", async () => {
  if (noNonRoot) {
    console.log(`skipped: ${noNonRoot}`);
    return;
  }
  const nobody = uidOf("nobody")!;
  const client = clientUser()!;
  const dir = tempDir("meshkey-nonroot-", dirs);
  chmodSync(dir, 0o755); // mkdtemp makes it 0700: others could not even reach the agent's home
  const home = join(dir, "home");
  mkdirSync(home, { mode: 0o755 });
  chownSync(home, nobody, -1);
  const stateDir = join(home, "state");
  const socket = join(`${stateDir}-sds`, "uds_path");
  // As nobody, /var/run/sds can be neither created nor written to (it may exist, root's).
  const c = spawnRaw(
    ["-u", "nobody", "--", process.execPath, resolve("bin/meshkey.js"), "serve",
      "--state-dir", stateDir,
      "--xds-listen", "127.0.0.1:0", "--xds-tls-listen", "127.0.0.1:0", "--ca-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
    "runuser",
  );
  try {
    await new Promise<void>((ok, fail) => {
      const check = () => {
        if (/^  admin\s/m.test(c.out())) ok();
      };
      c.child.stdout!.on("data", check);
      void c.exited.then(({ code }) => fail(new Error(`serve exited (${code}) before ready\n${c.out()}\n${c.err()}`)));
      check();
    });
    assert.match(c.out(), new RegExp(`^  SDS\\s+unix:${socket.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"), c.out());
    assert.match(c.err(), /falling back to .*-sds \(mode 0755: only this agent may write there\)/);
    assert.not.match(c.err(), /may not reach the SDS socket/, "every directory on the way is searchable by others");
    const st = lstatSync(`${stateDir}-sds`);
    assert.ok(st.isDirectory() && !st.isSymbolicLink());
    assert.is((st.mode & 0o777).toString(8), "755", "0755: not group- or other-writable");
    assert.is(st.uid, nobody, "owned by the agent");
    assert.is((lstatSync(stateDir).mode & 0o777).toString(8), "700", "the state dir stays private");
    assert.ok(lstatSync(socket).isSocket());

    // The client runs as a third uid: neither the agent's nor root (root would bypass the modes).
    const token = spawnSync(process.execPath, ["bin/meshkey.js", "token", "-n", "foo", "-s", "sleep", "--state-dir", stateDir], { encoding: "utf8" });
    assert.is(token.status, 0, token.stderr);
    writeFileSync(join(dir, "token"), token.stdout, { mode: 0o644 });
    writeFileSync(join(dir, "bogus-token"), "not-a-token\n", { mode: 0o644 });
    const fetchAs = (tokenFile: string) =>
      new Promise<{ code: number | null; out: string; err: string }>((done) => {
        const p = spawn("runuser", ["-u", client, "--", process.execPath, resolve("bin/meshkey.js"), "fetch-secret", "--socket", socket, "--token", tokenFile], { stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        let err = "";
        p.stdout.on("data", (d) => (out += d));
        p.stderr.on("data", (d) => (err += d));
        p.once("exit", (code) => done({ code, out, err }));
      });
    const ok = await fetchAs(join(dir, "token"));
    assert.is(ok.code, 0, ok.err);
    assert.match(ok.out, /^SPIFFE ID:\s+spiffe:\/\/cluster\.local\/ns\/foo\/sa\/sleep$/m);
    assert.match(ok.out, /verifies against ROOTCA/);
    const refused = await fetchAs(join(dir, "bogus-token"));
    assert.is(refused.code, 1);
    assert.match(refused.err, /refused the token \(Unauthenticated\)/, "reachable, and the token is what is refused");
  } finally {
    c.child.kill("SIGTERM"); // runuser passes it on to the agent
    await exitWithin(c, 15_000);
  }
});

test.run();
