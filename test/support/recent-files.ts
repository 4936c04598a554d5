// Files written since a moment, under a directory: what the "no private key on disk" tests read.
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** Regular files under `root` modified at or after `since` (ms), at most 6 levels down, skipping node_modules and .git and files of 4 MiB or more. */
export function* recentFiles(root: string, since: number, depth = 0): Generator<string> {
  if (depth > 6) return;
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return;
  }
  for (const n of names) {
    if (n === "node_modules" || n === ".git") continue;
    const p = join(root, n);
    let st;
    try {
      st = statSync(p);
    } catch {
      continue;
    }
    if (st.isDirectory()) yield* recentFiles(p, since, depth + 1);
    else if (st.isFile() && st.mtimeMs >= since && st.size < 4 * 1024 * 1024) yield p;
  }
}
