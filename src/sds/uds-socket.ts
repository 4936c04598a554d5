// Unix socket hygiene for the node agent's SDS socket.
//
// Every sidecar on the node must be able to connect, so the socket itself is mode
// 0666: what must be protected is the DIRECTORY that holds it (e.g. /var/run/sds,
// mounted read-only into workload pods, writable only by the agent), because
// whoever can create or replace a file there can impersonate the agent and steal
// every workload's identity. Hence, before listening:
//   - the parent directory is created if it is missing;
//   - an existing path is replaced only when it is a socket that nobody answers on
//     (stale, ECONNREFUSED); a live socket means another agent owns it and we refuse;
//   - a regular file, a directory or a symbolic link is never touched: we refuse.
// After close (and at process exit) the socket is removed, but only if it is still
// the one we created.
import { chmodSync, lstatSync, mkdirSync, unlinkSync, type Stats } from "node:fs";
import { connect } from "node:net";
import { dirname } from "node:path";

export class SocketPathError extends Error {
  override readonly name = "SocketPathError";
}

/** Prepares `path` for listen(): see the file comment. Throws SocketPathError. */
export async function prepareSocketPath(path: string): Promise<void> {
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  } catch (err) {
    throw new SocketPathError(`cannot create the directory of the SDS socket ${path}: ${(err as Error).message}`);
  }
  // The directory is what protects the socket: a symlink there may point into a directory
  // someone else controls, so it is refused, not followed (its own parents may be links,
  // e.g. /var/run -> /run).
  if (lstatSync(dirname(path)).isSymbolicLink()) {
    throw new SocketPathError(`refusing SDS socket path ${path}: its directory ${dirname(path)} is a symbolic link`);
  }
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw new SocketPathError(`cannot inspect the SDS socket path ${path}: ${(err as Error).message}`);
  }
  if (st.isSymbolicLink()) throw new SocketPathError(`refusing SDS socket path ${path}: it is a symbolic link`);
  if (st.isDirectory()) throw new SocketPathError(`refusing SDS socket path ${path}: it is a directory`);
  if (!st.isSocket()) throw new SocketPathError(`refusing SDS socket path ${path}: it is not a socket (a regular file or device)`);
  const live = await probe(path);
  if (live === "live") {
    throw new SocketPathError(`another process is serving on the SDS socket ${path}; refusing to take it over`);
  }
  if (live !== "stale") throw new SocketPathError(`cannot probe the existing SDS socket ${path}: ${live}`);
  try {
    unlinkSync(path);
  } catch (err) {
    throw new SocketPathError(`cannot remove the stale SDS socket ${path}: ${(err as Error).message}`);
  }
}

function probe(path: string): Promise<"live" | "stale" | string> {
  return new Promise((resolve) => {
    const s = connect({ path });
    const timer = setTimeout(() => {
      s.destroy();
      resolve("live"); // something accepted or hangs there: not ours to remove
    }, 1_000);
    s.once("connect", () => {
      clearTimeout(timer);
      s.destroy();
      resolve("live");
    });
    s.once("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code === "ECONNREFUSED" ? "stale" : `${err.code ?? ""} ${err.message}`);
    });
  });
}

/** The identity of the socket we created, to remove only that one later. */
export interface OwnedSocket {
  readonly path: string;
  /** Removes the socket if it is still ours (same device and inode). Safe to call twice. */
  remove(): void;
}

/** Makes a freshly bound socket connectable by every local user and remembers it. */
export function claimSocket(path: string): OwnedSocket {
  chmodSync(path, 0o666);
  const st = lstatSync(path);
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    process.off("exit", remove);
    try {
      const now = lstatSync(path);
      if (now.isSocket() && now.ino === st.ino && now.dev === st.dev) unlinkSync(path);
    } catch {
      /* already gone */
    }
  };
  // A process that exits without closing the server (process.exit after SIGTERM) still cleans up.
  process.on("exit", remove);
  return { path, remove };
}
