// Watches a mesh file: on each change (debounced), parses it and reports the model
// or the error. Watches the directory so that editors' rename-on-save is seen.
import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { parseMesh } from "./parse-mesh.js";
import { MeshError, type MeshModel } from "./model.js";

export interface MeshWatcher {
  close(): void;
}

export function watchMeshFile(
  path: string,
  onChange: (model: MeshModel) => void,
  onError: (err: Error) => void,
  debounceMs = 50,
): MeshWatcher {
  const name = basename(path);
  let timer: NodeJS.Timeout | undefined;
  let last: string | undefined;
  let closed = false;
  readFile(path, "utf8").then((t) => (last ??= t), () => {});
  const reload = async () => {
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if (!closed) onError(new MeshError(path, undefined, "", `cannot read: ${(err as Error).message}`));
      return;
    }
    if (closed || text === last) return;
    last = text;
    try {
      const model = parseMesh(text, path);
      onChange(model);
    } catch (err) {
      onError(err as Error);
    }
  };
  const watcher: FSWatcher = watch(dirname(path), (_event, file) => {
    if (file !== null && file !== name) return;
    clearTimeout(timer);
    timer = setTimeout(() => void reload(), debounceMs);
  });
  watcher.on("error", (err) => onError(err));
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      watcher.close();
    },
  };
}
