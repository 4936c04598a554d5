// Workload private keys live in memory only: after a run with several identities and
// a rotation, no file in the agent's directories holds a private key (except the
// CA's own key in its state dir), and no file anywhere under the temp directory or
// the working tree holds any of the keys the agent handed out.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { relative } from "node:path";
import { ackOf, secretsOf, sotwRequest, startAgent, tlsOf } from "./sds-harness.js";
import { recentFiles } from "../support/recent-files.js";


function read(p: string): string {
  try {
    return readFileSync(p, "latin1");
  } catch {
    return "";
  }
}

test("no workload private key is written to disk", async () => {
  const started = Date.now() - 1_000;
  const env = await startAgent({ certTtlSeconds: 3 });
  const keys = new Set<string>();
  try {
    for (const [ns, sa] of [["foo", "httpbin"], ["foo", "sleep"], ["bar", "httpbin"]] as const) {
      const s = env.client.stream({ kind: "header", token: await env.signer.mint(ns, sa) });
      s.send(sotwRequest(["default"]));
      const r1 = await s.next();
      keys.add(tlsOf(secretsOf(r1)[0]!).keyPem);
      if (sa === "httpbin" && ns === "foo") {
        s.send(ackOf(r1, ["default"]));
        const r2 = await s.next(5_000); // the rotated key too
        keys.add(tlsOf(secretsOf(r2)[0]!).keyPem);
      }
      s.close();
    }
    assert.is(keys.size, 4);
    // The agent's own directory: only the CA's state dir may hold a private key.
    for (const f of recentFiles(env.dir, 0)) {
      if (relative(env.dir, f).startsWith("ca")) continue;
      assert.not.ok(read(f).includes("PRIVATE KEY"), `${f} holds a private key`);
    }
    // Anywhere new under the temp directory or the working tree: none of the workload keys.
    const bodies = [...keys].map((k) => k.replace(/-----[A-Z ]+-----|\s/g, "").slice(20, 80));
    for (const root of [tmpdir(), process.cwd()]) {
      for (const f of recentFiles(root, started)) {
        const text = read(f).replace(/\s/g, "");
        for (const b of bodies) assert.not.ok(text.includes(b), `${f} holds a workload key`);
      }
    }
  } finally {
    await env.close();
  }
});

test.run();
