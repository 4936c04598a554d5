// Helpers for fault tests: a raw `meshkey serve` child that can be killed at any
// moment (not only once ready), root-consistency checks with openssl, and a probe
// for whether this machine lets us mount a private tmpfs (unshare -m).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const ROOT_KEY_FILE = "root-key.pem";
export const ROOT_CERT_FILE = "root-cert.pem";

/** The files a healthy state dir may hold; anything else (a temp file, a partial write) is a leftover. */
export const STATE_FILES = new Set([ROOT_KEY_FILE, ROOT_CERT_FILE, "dev-issuer-key.pem", "jwks.json"]);

export function leftovers(stateDir: string): string[] {
  if (!existsSync(stateDir)) return [];
  return readdirSync(stateDir).filter((f) => !STATE_FILES.has(f));
}

export interface RawChild {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns `node bin/meshkey.js serve ARGS` (or another argv) without waiting for anything. */
export function spawnRaw(argv: string[], command = process.execPath): RawChild {
  const child = spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return { child, out: () => out, err: () => err, exited };
}

/** Resolves with the exit, or SIGKILLs the child and fails after ms. */
export async function exitWithin(c: RawChild, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      c.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          c.child.kill("SIGKILL");
          reject(new Error(`process did not exit within ${ms} ms\nstdout: ${c.out()}\nstderr: ${c.err()}`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export function openssl(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync("openssl", args, { input, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** SHA-256 fingerprint of a PEM certificate, as openssl prints it. */
export function fingerprintOf(certFile: string): string {
  const r = openssl(["x509", "-noout", "-fingerprint", "-sha256", "-in", certFile]);
  if (r.status !== 0) throw new Error(`openssl cannot read ${certFile}: ${r.stderr}`);
  return r.stdout.trim().replace(/^.*=/, "").toLowerCase();
}

/** True when the private key file holds the key of the certificate file (compared by public key, with openssl). */
export function keyMatchesCert(keyFile: string, certFile: string): boolean {
  const fromCert = openssl(["x509", "-noout", "-pubkey", "-in", certFile]);
  const fromKey = openssl(["pkey", "-pubout", "-in", keyFile]);
  return fromCert.status === 0 && fromKey.status === 0 && fromCert.stdout.trim() === fromKey.stdout.trim();
}

export function tempDir(prefix: string, dirs: string[]): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/**
 * Why a private tmpfs mount cannot be used here, or undefined when it can. Checked by
 * doing it: `unshare -m` then mounting a tmpfs on a temp dir (nothing leaks outside).
 */
export function mountNamespaceUnavailable(): string | undefined {
  const probe = mkdtempSync(join(tmpdir(), "meshkey-mntprobe-"));
  try {
    mkdirSync(join(probe, "m"));
    const r = spawnSync("unshare", ["-m", "sh", "-c", `mount -t tmpfs -o size=8k tmpfs '${join(probe, "m")}' && touch '${join(probe, "m", "x")}'`], {
      encoding: "utf8",
      timeout: 5_000,
    });
    if (r.error) return `unshare is not available (${r.error.message})`;
    if (r.status !== 0) return `unshare -m / mount -t tmpfs not permitted here: ${(r.stderr || "").trim() || `exit ${r.status}`}`;
    if (existsSync(join(probe, "m", "x"))) return "the tmpfs mount leaked out of its namespace";
    return undefined;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}
