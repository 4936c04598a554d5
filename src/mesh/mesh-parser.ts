// Mesh file parses off the main thread, so that issuing certificates never waits on a
// config parse: one long-lived worker thread (started on first use) parses one file at a
// time, with a bounded queue, a time limit (past it the worker is terminated and replaced)
// and a heap limit (resourceLimits). The model comes back in batches, one event-loop turn
// each, so that even receiving a large model never blocks the main thread for long.
import { Worker } from "node:worker_threads";
import { MeshError, type MeshModel, type MeshNamespace, type MeshService } from "./model.js";
import { readMeshBytes, type ReadMeshOptions } from "./parse-mesh.js";

/** A parse that takes longer than this is stopped and refused (a 16 MiB file takes ~20 s on one slow core). */
export const DEFAULT_MESH_PARSE_TIMEOUT_MS = 60_000;
/** The parse worker's heap limit (a 15 MB file needs ~1.5 GB while yaml holds its document). */
export const DEFAULT_MESH_PARSE_HEAP_MB = 3_072;
/** Parses waiting for the worker beyond this many are refused. */
export const DEFAULT_MESH_PARSE_QUEUE = 4;

export interface MeshParserOptions {
  /** A parse (from when the worker starts on it until the model is back) that takes longer is refused. */
  timeoutMs?: number;
  /** The worker's old-generation heap limit, in MB: past it the parse is refused and the worker replaced. */
  maxHeapMb?: number;
  /** Parses waiting (not counting the one running) beyond this are refused. */
  maxQueued?: number;
}

export interface MeshParser {
  /** Parses and validates a mesh file's contents in the worker. Rejects with MeshError naming `file`. */
  parse(contents: Uint8Array | string, file: string): Promise<MeshModel>;
  /** The running worker's thread id, or undefined when none runs (for tests and debug). */
  threadId(): number | undefined;
  /** Stops the worker; parses still queued or running are refused. */
  close(): Promise<void>;
}

/** Messages to the worker. */
export type ToParseWorker =
  | { type: "parse"; id: number; file: string; contents: Uint8Array | string }
  /** The previous batch of services is in: send the next one. */
  | { type: "more"; id: number };

/** Messages from the worker. */
export type FromParseWorker =
  | { type: "ready" }
  | { type: "services"; id: number; services: MeshService[] }
  | { type: "done"; id: number; namespaces: MeshNamespace[] }
  | { type: "error"; id: number; file: string; line: number | undefined; path: string; detail: string };

interface Job {
  id: number;
  file: string;
  contents: Uint8Array | string;
  services: MeshService[];
  resolve(model: MeshModel): void;
  reject(err: MeshError): void;
}

// The worker runs a .ts module: its bootstrap registers tsx's loader in the worker itself, as
// bin/meshkey.js does in the main thread, so it runs alike under `node --import tsx` and the CLI.
const WORKER_URL = new URL("./mesh-parse-worker.mjs", import.meta.url);

export function createMeshParser(options: MeshParserOptions = {}): MeshParser {
  const timeoutMs = options.timeoutMs ?? DEFAULT_MESH_PARSE_TIMEOUT_MS;
  const maxHeapMb = options.maxHeapMb ?? DEFAULT_MESH_PARSE_HEAP_MB;
  const maxQueued = options.maxQueued ?? DEFAULT_MESH_PARSE_QUEUE;
  const queue: Job[] = [];
  let nextId = 1;
  let closed = false;
  let worker: Worker | undefined;
  let ready = false;
  let running: Job | undefined;
  let timer: NodeJS.Timeout | undefined;

  const refuse = (job: Job, detail: string) => job.reject(new MeshError(job.file, undefined, "", detail));

  // The worker is gone (terminated, crashed or out of memory): the running parse is refused
  // with `detail`, and the next parse starts a new worker.
  const discard = (w: Worker, detail: string) => {
    if (worker !== w) return;
    const started = ready;
    worker = undefined;
    ready = false;
    clearTimeout(timer);
    void w.terminate();
    // A worker that died before it was ready takes the parse waiting for it along: no retry loop.
    const job = running ?? (started ? undefined : queue.shift());
    running = undefined;
    if (job) refuse(job, detail);
    pump();
  };

  const start = (): Worker => {
    const w = new Worker(WORKER_URL, {
      // Not the parent's flags: the bootstrap registers tsx, once.
      execArgv: [],
      resourceLimits: { maxOldGenerationSizeMb: maxHeapMb },
    });
    let failure: Error | undefined;
    w.on("message", (m: FromParseWorker) => {
      if (worker !== w) return;
      if (m.type === "ready") {
        ready = true;
        pump();
        return;
      }
      const job = running;
      if (!job || job.id !== m.id) return;
      switch (m.type) {
        case "services":
          for (const s of m.services) job.services.push(s);
          w.postMessage({ type: "more", id: job.id } satisfies ToParseWorker);
          return;
        case "done":
          finish();
          job.resolve({ namespaces: m.namespaces, services: job.services });
          return;
        case "error":
          finish();
          job.reject(new MeshError(m.file, m.line, m.path, m.detail));
          return;
      }
    });
    w.on("error", (err) => (failure = err));
    w.on("exit", (code) => {
      const oom = (failure as NodeJS.ErrnoException | undefined)?.code === "ERR_WORKER_OUT_OF_MEMORY";
      discard(
        w,
        oom
          ? `the parse ran out of memory (the mesh parse worker's heap limit is ${maxHeapMb} MB); not parsed`
          : `the mesh parse worker stopped (${failure ? failure.message : `exit code ${code}`}); not parsed`,
      );
    });
    w.unref();
    return w;
  };

  const finish = () => {
    clearTimeout(timer);
    running = undefined;
    worker?.unref();
    pump();
  };

  function pump() {
    if (closed || running || queue.length === 0) return;
    if (!worker) worker = start();
    // Keep the process alive while a parse is owed to someone.
    worker.ref();
    if (!ready) return;
    const job = queue.shift()!;
    running = job;
    const w = worker;
    timer = setTimeout(() => discard(w, `the parse took longer than the limit of ${timeoutMs} ms; stopped, not parsed`), timeoutMs);
    w.postMessage({ type: "parse", id: job.id, file: job.file, contents: job.contents } satisfies ToParseWorker);
  }

  return {
    parse(contents, file) {
      return new Promise<MeshModel>((resolve, reject) => {
        const job: Job = { id: nextId++, file, contents, services: [], resolve, reject };
        if (closed) return refuse(job, "the mesh parser is closed; not parsed");
        if (queue.length >= maxQueued) return refuse(job, `${queue.length} mesh parses are already waiting (the limit); not parsed`);
        queue.push(job);
        pump();
      });
    },
    threadId: () => (ready ? worker?.threadId : undefined),
    async close() {
      closed = true;
      for (const job of queue.splice(0)) refuse(job, "the mesh parser is closed; not parsed");
      const w = worker;
      if (w) {
        discard(w, "the mesh parser is closed; not parsed");
        await w.terminate();
      }
    },
  };
}

let shared: MeshParser | undefined;

/** The process's mesh parser (default limits), started on first use; its idle worker never keeps the process alive. */
export function sharedMeshParser(): MeshParser {
  return (shared ??= createMeshParser());
}

/** A mesh file's model and the exact bytes it was parsed from (what a watch starts from). */
export interface MeshSource {
  file: string;
  model: MeshModel;
  contents: Uint8Array;
}

export interface LoadMeshSourceOptions extends ReadMeshOptions {
  /** Default: sharedMeshParser(). */
  parser?: MeshParser;
}

/** Reads a mesh file once and parses it off the main thread. Throws MeshError naming the file. */
export async function loadMeshSource(file: string, options: LoadMeshSourceOptions = {}): Promise<MeshSource> {
  const contents = await readMeshBytes(file, options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes });
  const model = await (options.parser ?? sharedMeshParser()).parse(contents, file);
  return { file, model, contents };
}
