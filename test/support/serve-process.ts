// Runs `meshkey serve` as a real child process for end-to-end tests and reads the
// addresses from its ready summary. Only processes started here are stopped, by PID.
import { spawn, type ChildProcess } from "node:child_process";

export interface ServeProcess {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  admin: string;
  sds?: string;
  xds?: string;
  /** mTLS ADS (--xds-tls-listen), when the CA runs in the process. */
  xdsTls?: string;
  ca?: string;
  rootFingerprint?: string;
  /** Milliseconds from spawn until the ready summary. */
  startupMs: number;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
}

export async function startServeProcess(args: string[], timeoutMs = 20_000): Promise<ServeProcess> {
  const started = Date.now();
  const child = spawn(process.execPath, ["bin/meshkey.js", "serve", "--log-level", "warn", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`meshkey serve not ready within ${timeoutMs} ms\nstdout: ${out}\nstderr: ${err}`));
    }, timeoutMs);
    const check = () => {
      if (/^  admin\s/m.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", check);
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`meshkey serve exited (${code}) before ready\nstdout: ${out}\nstderr: ${err}`));
    });
  });
  const field = (label: string) => new RegExp(`^  ${label}\\s+(\\S+)`, "m").exec(out)?.[1];
  const result: ServeProcess = {
    child,
    stdout: () => out,
    stderr: () => err,
    admin: field("admin")!.replace(/^http:\/\//, ""),
    startupMs: Date.now() - started,
    async stop(signal = "SIGTERM") {
      const t0 = Date.now();
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const r = await Promise.race([
        exited,
        new Promise<never>((_, reject) =>
          setTimeout(() => {
            child.kill("SIGKILL");
            reject(new Error(`meshkey serve did not exit within 15 s of ${signal}\nstderr: ${err}`));
          }, 15_000).unref(), // the child keeps the loop alive; this timer must not once it has exited
        ),
      ]);
      return { ...r, ms: Date.now() - t0 };
    },
  };
  const sds = field("SDS");
  const xds = field("ADS");
  const xdsTls = field("ADS-mTLS");
  const ca = field("CA");
  const root = field("root");
  if (sds) result.sds = sds;
  if (xds) result.xds = xds;
  if (xdsTls) result.xdsTls = xdsTls;
  if (ca) result.ca = ca;
  if (root) result.rootFingerprint = root;
  return result;
}

/** Arguments that keep a test's serve process on its own temp paths and free ports. */
export function isolatedServeArgs(dir: string): string[] {
  return [
    "--state-dir", `${dir}/state`,
    "--sds-socket", `${dir}/sds/uds_path`,
    "--xds-listen", "127.0.0.1:0",
    "--xds-tls-listen", "127.0.0.1:0",
    "--ca-listen", "127.0.0.1:0",
    "--admin-listen", "127.0.0.1:0",
  ];
}
