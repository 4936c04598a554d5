// Watches a mesh file: on each change (debounced), reads it (bounded by maxBytes),
// parses it and reports the model or the error. Watches the directory so that
// editors' rename-on-save is seen.
import { watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import { parseMesh, readMeshFile } from "./parse-mesh.js";
import type { MeshModel } from "./model.js";

export interface MeshWatcher {
  /** Resolves once the file's current text is known: a change after this is seen as one. */
  readonly ready: Promise<void>;
  close(): void;
}

export function watchMeshFile(
  path: string,
  onChange: (model: MeshModel) => void,
  onError: (err: Error) => void,
  debounceMs = 50,
  maxBytes?: number,
): MeshWatcher {
  const readOptions = maxBytes === undefined ? {} : { maxBytes };
  const name = basename(path);
  let timer: NodeJS.Timeout | undefined;
  let last: string | undefined;
  let closed = false;
  const ready = readMeshFile(path, readOptions).then(
    (t) => void (last ??= t),
    () => {},
  );
  const reload = async () => {
    let text: string;
    try {
      text = await readMeshFile(path, readOptions);
    } catch (err) {
      // A refused read is not remembered as the last text: the same content is refused again.
      if (!closed) onError(err as Error);
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
    ready,
    close() {
      closed = true;
      clearTimeout(timer);
      watcher.close();
    },
  };
}
