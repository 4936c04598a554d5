// Files in the state directory: created atomically (temp file, fsync, then a
// link that fails if the target exists, so two starts never both mint), mode 0600.
// A temp file names its writer's PID, so that one left by a killed process is
// removed on the next start while a live writer's is left alone.
//
// Permissions are checked the way OpenSSH checks ~/.ssh and private keys, and too open
// ones are refused, never tightened behind the operator's back: a directory others can
// write to may already hold a key planted by them, and a key others could read may
// already be copied. Either way the operator decides (chmod, or a new root), not us.
import * as fs from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { dirname, join, basename } from "node:path";
import { StateDirError } from "./errors.js";

/** Creates `dir` (mode 0700) if missing; refuses one that group or others may write to. */
export async function ensureStateDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await checkStateDirMode(dir);
  await removeStaleTemps(dir);
}

const mode = (m: number) => `0${(m & 0o7777).toString(8)}`;

/** Throws StateDirError when `dir` is not a directory or group/others may write to it. */
export async function checkStateDirMode(dir: string): Promise<void> {
  const st = await fs.stat(dir);
  if (!st.isDirectory()) throw new StateDirError(`state dir ${dir} is not a directory`);
  if ((st.mode & 0o022) !== 0) {
    throw new StateDirError(
      `state dir ${dir} is writable by ${st.mode & 0o020 ? "its group" : "others"} (mode ${mode(st.mode)}): ` +
        `anyone who can write there can replace the CA's keys; run \`chmod go-w ${dir}\` (0700 recommended)`,
    );
  }
}

/**
 * Reads a private key file of the state dir, or undefined when there is none. Refuses
 * (StateDirError) a key that group or others may read or write, or that is not a regular file.
 */
export async function readPrivateKeyIfExists(path: string): Promise<string | undefined> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new StateDirError(`private key ${path} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      throw new StateDirError(
        `private key ${path} is accessible by group or others (mode ${mode(st.mode)}): it may have been copied; ` +
          `if it is safe, run \`chmod 600 ${path}\`, otherwise replace it`,
      );
    }
    return await fh.readFile("utf8");
  } finally {
    await fh.close();
  }
}

const TEMP_FILE = /^\..+\.(\d+)\.[0-9a-f]{12}\.tmp$/;

/** Deletes temp files whose writer process is gone (killed between writing and linking). */
async function removeStaleTemps(dir: string): Promise<void> {
  for (const name of await fs.readdir(dir)) {
    const pid = Number(TEMP_FILE.exec(name)?.[1] ?? NaN);
    if (!Number.isSafeInteger(pid) || pid === process.pid || processAlive(pid)) continue;
    await fs.unlink(join(dir, name)).catch(() => {});
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

export async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

async function writeTemp(path: string, data: string, mode: number): Promise<string> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(tmp, "wx", mode);
    await fh.writeFile(data);
    await fh.chmod(mode);
    await fh.sync();
    await fh.close();
    return tmp;
  } catch (err) {
    // e.g. ENOSPC or EROFS: say which file, and leave no partial temp file behind.
    await fh?.close().catch(() => {});
    if (fh) await fs.unlink(tmp).catch(() => {});
    const e = err as NodeJS.ErrnoException;
    throw Object.assign(new Error(`cannot write ${path}: ${e.message}`, { cause: err }), { code: e.code });
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, "r");
  try {
    await fh.sync();
  } catch {
    // some file systems cannot fsync a directory
  } finally {
    await fh.close();
  }
}

/**
 * Creates `path` with `data` only if it does not exist yet. Returns false (and
 * leaves the existing file alone) when another writer got there first.
 */
export async function createExclusive(path: string, data: string, mode = 0o600): Promise<boolean> {
  const tmp = await writeTemp(path, data, mode);
  try {
    await fs.link(tmp, path);
    await syncDir(dirname(path));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    await fs.unlink(tmp).catch(() => {});
  }
}

/** Writes `path` atomically (temp + fsync + rename), replacing what was there. */
export async function writeAtomic(path: string, data: string, mode = 0o600): Promise<void> {
  const tmp = await writeTemp(path, data, mode);
  try {
    await fs.rename(tmp, path);
  } catch (err) {
    await fs.unlink(tmp).catch(() => {});
    throw err;
  }
  await syncDir(dirname(path));
}
