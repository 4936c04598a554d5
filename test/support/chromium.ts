// Headless Chromium for tests of the status page: Debian's /usr/bin/chromium (installed by
// scripts/install-chromium.sh) driven by playwright-core. The browser is started as a
// server whose PID we hold, and stopped by that PID. Like envoySuite: a missing Chromium
// skips the suite with one loud line, and under MESHKEY_REQUIRE_ENVOY=1 (CI) fails it.
import { accessSync, constants as fsConstants } from "node:fs";
import { chromium, type Browser, type BrowserServer } from "playwright-core";
import { suite, type Test } from "uvu";

export const CHROMIUM_PATH = "/usr/bin/chromium";
export const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"];
const INSTALL_HINT = "bash scripts/install-chromium.sh (apt-get install -y chromium)";

export function chromiumInstalled(): boolean {
  try {
    accessSync(CHROMIUM_PATH, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** A suite whose tests are all skipped (hooks too), as envoySuite does without Envoy. */
function skippedSuite(name: string): Test {
  const s = suite(name);
  const noHook = Object.assign(() => {}, { each: () => {} });
  const skipping = ((testName: string, fn: () => unknown) => s.skip(testName, fn as never)) as unknown as Test;
  return Object.assign(skipping, { ...s, only: s.skip, skip: s.skip, before: noHook, after: noHook, run: s.run });
}

/**
 * A suite that needs Chromium; `base` builds it when Chromium is there (e.g. envoySuite,
 * which in turn skips without Envoy).
 */
export function chromiumSuite(name: string, base: (name: string) => Test = suite): Test {
  if (chromiumInstalled()) return base(name);
  if (process.env.MESHKEY_REQUIRE_ENVOY === "1") {
    throw new Error(`MESHKEY_REQUIRE_ENVOY=1 but no Chromium at ${CHROMIUM_PATH}: install it with ${INSTALL_HINT}`);
  }
  console.log(`\n!!! SKIPPED (no Chromium at ${CHROMIUM_PATH}): ${name} — install it with ${INSTALL_HINT}\n`);
  return skippedSuite(name);
}

export interface RunningChromium {
  readonly browser: Browser;
  readonly pid: number;
  /** Closes the browser, then makes sure its process (by PID) is gone. */
  close(): Promise<void>;
}

export async function startChromium(): Promise<RunningChromium> {
  const server: BrowserServer = await chromium.launchServer({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  });
  const proc = server.process();
  const pid = proc.pid!;
  const exited = new Promise<void>((r) => (proc.exitCode !== null || proc.signalCode !== null ? r() : proc.once("exit", () => r())));
  let browser: Browser;
  try {
    browser = await chromium.connect(server.wsEndpoint(), { timeout: 30_000 });
  } catch (err) {
    process.kill(pid, "SIGKILL");
    await exited;
    throw err;
  }
  return {
    browser,
    pid,
    async close() {
      await browser.close().catch(() => {});
      await server.close().catch(() => {});
      const timer = setTimeout(() => {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }, 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
