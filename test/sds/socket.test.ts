// Socket hygiene of the SDS agent: the directory is created, the socket is 0666
// (every sidecar must connect; the directory is what must be protected), nothing
// that is not a stale socket is ever replaced, a live agent is never displaced,
// and the socket is removed on close and at exit.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSecretCache, startSdsServer, SocketPathError } from "../../src/sds/index.js";
import { sotwRequest, startAgent } from "./sds-harness.js";

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "meshkey-sock-"));
  dirs.push(d);
  return d;
}
test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function agent(socketPath: string) {
  const cache = createSecretCache({
    trustDomain: "cluster.local",
    caProvider: { sign: async () => Promise.reject(new Error("unused")) },
  });
  return startSdsServer({
    socketPath,
    cache,
    authenticator: { authenticate: async () => Promise.reject(new Error("unused")) },
  }).finally(() => cache.close());
}

test("creates the missing parent directory and makes the socket connectable by everyone (0666)", async () => {
  const path = join(tempDir(), "var", "run", "sds", "uds_path");
  const server = await agent(path);
  try {
    const st = lstatSync(path);
    assert.ok(st.isSocket());
    assert.is(st.mode & 0o777, 0o666);
    assert.is(server.address, `unix:${path}`);
  } finally {
    await server.close();
  }
  assert.not.ok(existsSync(path), "socket removed on close");
});

const refused: Array<[string, (path: string, dir: string) => void, RegExp]> = [
  ["a regular file", (p) => writeFileSync(p, "precious"), /not a socket/],
  ["a directory", (p) => mkdirSync(p), /is a directory/],
  [
    "a symbolic link",
    (p, dir) => {
      writeFileSync(join(dir, "target"), "precious");
      symlinkSync(join(dir, "target"), p);
    },
    /symbolic link/,
  ],
];
for (const [what, make, message] of refused) {
  test(`refuses to replace ${what} at the socket path, and leaves it alone`, async () => {
    const dir = tempDir();
    const path = join(dir, "uds_path");
    make(path, dir);
    const before = lstatSync(path);
    const err = await agent(path).then(
      async (s) => {
        await s.close();
        return undefined;
      },
      (e: Error) => e,
    );
    assert.instance(err, SocketPathError);
    assert.match(err!.message, message);
    assert.match(err!.message, path);
    const after = lstatSync(path);
    assert.is(after.ino, before.ino, "untouched");
    if (before.isFile()) assert.is(readFileSync(path, "utf8"), "precious");
  });
}

test("refuses a socket directory that is a symbolic link, and creates nothing where it points", async () => {
  const dir = tempDir();
  const elsewhere = join(dir, "someone-elses");
  mkdirSync(elsewhere);
  symlinkSync(elsewhere, join(dir, "sds"));
  const path = join(dir, "sds", "uds_path");
  const err = await agent(path).then(
    async (s) => {
      await s.close();
      return undefined;
    },
    (e: Error) => e,
  );
  assert.instance(err, SocketPathError);
  assert.match(err!.message, /its directory .*sds is a symbolic link/);
  assert.not.ok(existsSync(join(elsewhere, "uds_path")), "no socket where the link points");
});

test("replaces a stale socket (nobody listening)", async () => {
  const path = join(tempDir(), "uds_path");
  // A bound but never listening socket: connecting to it is refused, as after a crash.
  execFileSync("python3", ["-c", `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(path)})`]);
  assert.ok(lstatSync(path).isSocket());
  const server = await agent(path);
  await server.close();
});

test("a second agent on a live socket fails clearly and the first keeps its socket", async () => {
  const path = join(tempDir(), "uds_path");
  const first = await agent(path);
  try {
    const ino = lstatSync(path).ino;
    const err = await agent(path).then(
      async (s) => {
        await s.close();
        return undefined;
      },
      (e: Error) => e,
    );
    assert.instance(err, SocketPathError);
    assert.match(err!.message, /another process is serving/);
    assert.is(lstatSync(path).ino, ino, "the first agent's socket is still there");
  } finally {
    await first.close();
  }
});

test("close() ends open streams (Envoy reconnects elsewhere) and removes the socket", async () => {
  const env = await startAgent();
  try {
    const s = env.client.stream({ kind: "header", token: await env.signer.mint("foo", "httpbin") });
    s.send(sotwRequest(["default"]));
    await s.next();
    const t0 = Date.now();
    await env.server.close(1_000);
    const st = await s.status;
    assert.is.not(st.code, 0);
    assert.ok(Date.now() - t0 < 3_000);
    assert.not.ok(existsSync(env.socketPath));
    assert.is(env.server.debug().streams.length, 0);
  } finally {
    await env.close();
  }
});

for (const mode of ["sigterm", "exit"] as const) {
  test(`the socket is removed when the agent process ends (${mode === "sigterm" ? "SIGTERM → close" : "exit without close"})`, async () => {
    const path = join(tempDir(), "sds", "uds_path");
    const child = spawn(process.execPath, ["--import", "tsx", "fixtures/sds/agent-process.ts", path, mode], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
      child.once("exit", (code) => reject(new Error(`agent exited early (${code})`)));
    });
    assert.ok(lstatSync(path).isSocket());
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGTERM");
    assert.is(await exited, 0);
    assert.not.ok(existsSync(path));
  });
}

test.run();
