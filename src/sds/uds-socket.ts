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
import { chmodSync, lstatSync, mkdirSync, statSync, unlinkSync, type Stats } from "node:fs";
import { connect } from "node:net";
import { dirname, resolve } from "node:path";

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

/** What prepareSocketDirectory found: whether it made the directory, and what may keep other users out. */
export interface SocketDirectory {
  readonly path: string;
  readonly created: boolean;
  /** The first directory on the way (the directory itself or an ancestor) that others may not search (no o+x). */
  readonly notSearchableByOthers: string | undefined;
}

/**
 * A directory of the agent's own for its socket, as /var/run/sds is: created mode 0755 if it is
 * missing (whatever the umask), else it must be a real directory (not a symbolic link), owned by
 * this process's user, and writable by nobody else. That is what keeps another local user from
 * planting or replacing the socket. Throws SocketPathError. Modes of an existing directory are
 * never changed.
 */
export function prepareSocketDirectory(dir: string): SocketDirectory {
  let created = false;
  let st = lstatOrUndefined(dir);
  if (!st) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      chmodSync(dir, 0o755);
      created = true;
    } catch (err) {
      throw new SocketPathError(`cannot create the SDS socket directory ${dir}: ${(err as Error).message}`);
    }
    st = lstatSync(dir);
  }
  if (st.isSymbolicLink()) throw new SocketPathError(`refusing SDS socket directory ${dir}: it is a symbolic link`);
  if (!st.isDirectory()) throw new SocketPathError(`refusing SDS socket directory ${dir}: it is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new SocketPathError(`refusing SDS socket directory ${dir}: it is owned by uid ${st.uid}, not by this agent (uid ${uid})`);
  }
  if ((st.mode & 0o022) !== 0) {
    throw new SocketPathError(
      `refusing SDS socket directory ${dir}: group or others may write to it (mode ${(st.mode & 0o777).toString(8)}); chmod go-w ${dir}`,
    );
  }
  return { path: dir, created, notSearchableByOthers: firstNotSearchable(dir) };
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new SocketPathError(`cannot inspect the SDS socket directory ${path}: ${(err as Error).message}`);
  }
}

/** An Envoy of another uid needs search (x) permission on every directory down to the socket. */
function firstNotSearchable(dir: string): string | undefined {
  const chain: string[] = [];
  for (let d = resolve(dir); ; d = dirname(d)) {
    chain.unshift(d);
    if (dirname(d) === d) break;
  }
  for (const d of chain) {
    try {
      if ((statSync(d).mode & 0o001) === 0) return d;
    } catch {
      return d;
    }
  }
  return undefined;
}
