// Without permission to create /var/run/sds (here: a read-only /run in a private
// mount namespace), `meshkey serve` on defaults puts the socket in the state dir
// and says so, instead of failing.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { exitWithin, mountNamespaceUnavailable, spawnRaw, tempDir } from "../reliability/support/fault-helpers.js";

const dirs: string[] = [];
test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const unavailable = mountNamespaceUnavailable();

test("the default SDS socket falls back to <state-dir>/uds_path when /var/run/sds cannot be created", async () => {
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
    for (let i = 0; i < 200 && !/^  admin\s/m.test(c.out()) && c.child.exitCode === null; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(c.out(), new RegExp(`^  SDS\\s+unix:${join(stateDir, "uds_path").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"), `${c.out()}\n${c.err()}`);
    assert.match(c.err(), /falling back to the state dir/);
  } finally {
    c.child.kill("SIGTERM");
    const r = await exitWithin(c, 15_000);
    assert.is(r.code, 0, c.err());
  }
});

test.run();
