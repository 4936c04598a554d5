// Watches a mesh file: on each change (debounced), reads it (bounded by maxBytes),
// parses it off the main thread and reports the model or the error. Watches the
// directory so that editors' rename-on-save is seen. One change is handled at a time,
// so models are reported in the order the file held them.
import { watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import { readMeshBytes } from "./parse-mesh.js";
import { sharedMeshParser, type MeshParser } from "./mesh-parser.js";
import type { MeshModel } from "./model.js";

export interface MeshWatcher {
  /** Resolves once the file's current text is known: a change after this is seen as one. */
  readonly ready: Promise<void>;
  close(): void;
}

export interface WatchMeshFileOptions {
  onChange: (model: MeshModel) => void;
  onError: (err: Error) => void;
  debounceMs?: number;
  maxBytes?: number;
  /**
   * The bytes the caller's current model was parsed from (MeshSource.contents). The file is
   * read again once the watch is in place, and reported if it no longer holds them: a change
   * written between the caller's read and the watch is not lost. Without it, the text read at
   * start is taken as the current one.
   */
  initial?: Uint8Array;
  /** Default: sharedMeshParser(). */
  parser?: MeshParser;
}

export function watchMeshFile(path: string, options: WatchMeshFileOptions): MeshWatcher {
  const { onChange, onError } = options;
  const debounceMs = options.debounceMs ?? 50;
  const readOptions = options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes };
  const parser = options.parser ?? sharedMeshParser();
  const name = basename(path);
  let timer: NodeJS.Timeout | undefined;
  let last: Uint8Array | undefined = options.initial;
  let closed = false;

  const reloadOnce = async () => {
    let contents: Buffer;
    try {
      contents = await readMeshBytes(path, readOptions);
    } catch (err) {
      // A refused read is not remembered as the last text: the same content is refused again.
      if (!closed) onError(err as Error);
      return;
    }
    if (closed || (last !== undefined && contents.equals(last))) return;
    last = contents;
    let model: MeshModel;
    try {
      model = await parser.parse(contents, path);
    } catch (err) {
      if (!closed) onError(err as Error);
      return;
    }
    if (!closed) onChange(model);
  };

  // One reload at a time; changes seen during one are folded into one more.
  let running: Promise<void> | undefined;
  let again = false;
  const reload = (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await reloadOnce();
      } while (again && !closed);
    })().finally(() => (running = undefined));
    return running;
  };

  // The watch is in place (synchronously) before the start read below, so no change falls between.
  const watcher: FSWatcher = watch(dirname(path), (_event, file) => {
    if (file !== null && file !== name) return;
    clearTimeout(timer);
    timer = setTimeout(() => void reload(), debounceMs);
  });
  watcher.on("error", (err) => onError(err));
  const ready =
    last !== undefined
      ? reload()
      : readMeshBytes(path, readOptions).then(
          (t) => void (last ??= t),
          () => {},
        );
  return {
    ready,
    close() {
      closed = true;
      clearTimeout(timer);
      watcher.close();
    },
  };
}
