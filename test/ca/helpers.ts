// Shared helpers of the CA tests: temp dirs and the openssl CLI as the independent judge.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function tempDir(prefix = "meshkey-ca-"): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Runs openssl; returns status and output (stdout + stderr). */
export function openssl(args: string[], input?: string): { status: number; out: string } {
  const r = spawnSync("openssl", args, { encoding: "utf8", input, timeout: 30_000 });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

export function writeIn(dir: string, name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** `openssl verify -x509_strict -purpose P` of a leaf with optional intermediates against a root file. */
export function verifyChain(dir: string, chain: string[], purpose: "sslclient" | "sslserver"): { status: number; out: string } {
  const root = writeIn(dir, "v-root.pem", chain[chain.length - 1]!);
  const leaf = writeIn(dir, "v-leaf.pem", chain[0]!);
  const args = ["verify", "-x509_strict", "-purpose", purpose, "-CAfile", root];
  if (chain.length > 2) args.push("-untrusted", writeIn(dir, "v-inter.pem", chain.slice(1, -1).join("")));
  args.push(leaf);
  return openssl(args);
}
