// Key generation, CSR verification and certificate signing on worker threads, so that the
// main thread (protocol state machines, caches) never waits on a signature: N long-lived
// workers, one shared queue with a bound (past it a job is refused at once, so callers back
// off instead of memory growing), a few jobs in flight per worker, a crashed worker replaced
// and its jobs refused. CA keys reach the workers as KeyObjects over postMessage (cloned in
// memory, never written anywhere); workload private keys come back as PEM strings.
import type { KeyObject } from "node:crypto";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { InvalidRequestError } from "./errors.js";
import type { KeyType } from "./identity.js";

/** Jobs waiting for a worker beyond this many are refused (CryptoPoolBusyError). */
export const DEFAULT_CRYPTO_POOL_QUEUE = 1024;
/**
 * Jobs handed to one worker at a time: two keep a worker busy while the next message is on its
 * way, without parking many jobs behind a slow one (an RSA key) while another worker idles.
 */
const IN_FLIGHT_PER_WORKER = 2;
/** A worker that dies before it is ready is started again after this (doubling to the max). */
const RESTART_DELAY_MS = 100;
const MAX_RESTART_DELAY_MS = 10_000;

/**
 * The bytes of `b` in an ArrayBuffer of their own: postMessage copies a view's whole buffer, and
 * a small Buffer is a slice of Node's shared 8 KiB pool.
 */
export function ownBytes(b: Uint8Array): Uint8Array {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : new Uint8Array(b);
}

/** The default number of workers: the CPUs this process may use, at least one. */
export function defaultCryptoWorkers(): number {
  return Math.max(1, availableParallelism());
}

export interface CryptoPoolOptions {
  /** Worker threads (default defaultCryptoWorkers(), at least 1). */
  workers?: number;
  /** Jobs waiting for a worker (not counting those being worked on) beyond this are refused (default 1024). */
  maxQueuedJobs?: number;
}

export interface KeyAndCsrPems {
  privateKeyPem: string;
  csrPem: string;
}

/** A CA signing key the workers hold (see CryptoPool.addSigningKey). */
export interface PoolSigningKey {
  /**
   * Verifies a PKCS#10 request's self-signature (as verifyCsr does) and signs `tbs` with this key,
   * in a worker. Resolves the Certificate DER; rejects with InvalidRequestError ("bad CSR: …") when
   * the CSR does not verify, and with a CryptoPoolError when the pool cannot do the job.
   */
  verifyCsrAndSign(csrDer: Uint8Array, tbs: Uint8Array): Promise<Buffer>;
}

export interface CryptoPool {
  /** Worker threads the pool keeps running. */
  readonly size: number;
  /** A fresh key pair and a CSR for it, made in a worker (what createKeyAndCsr returns). A plain function: pass it as it is. */
  readonly createKeyAndCsr: (keyType: KeyType) => Promise<KeyAndCsrPems>;
  /** Hands a CA private key to every worker, present and future. */
  addSigningKey(key: KeyObject): PoolSigningKey;
  /** Jobs waiting for a worker and jobs being worked on (for debug and metrics). */
  load(): { queued: number; inFlight: number; readyWorkers: number };
  /** The running workers (for tests and debug: a test may terminate one). */
  workerThreads(): readonly Worker[];
  /** Stops every worker; jobs still queued or in flight are rejected with CryptoPoolClosedError. */
  close(): Promise<void>;
}

/** Why the pool could not do a job (not a verdict on the job itself): retry later. */
export class CryptoPoolError extends Error {
  override name = "CryptoPoolError";
}
/** The queue is full: back off and try again. */
export class CryptoPoolBusyError extends CryptoPoolError {
  override name = "CryptoPoolBusyError";
}
/** The pool is closed (the process is shutting down). */
export class CryptoPoolClosedError extends CryptoPoolError {
  override name = "CryptoPoolClosedError";
}
/** The worker doing the job stopped (crashed or was terminated) before it answered; it is replaced. */
export class CryptoWorkerExitedError extends CryptoPoolError {
  override name = "CryptoWorkerExitedError";
}

/** A job as the worker receives it. */
export type CryptoJob =
  | { kind: "keyAndCsr"; keyType: KeyType }
  | { kind: "sign"; signer: number; csrDer: Uint8Array; tbs: Uint8Array };

/** Messages to a worker. */
export type ToCryptoWorker =
  | { type: "key"; id: number; key: KeyObject }
  | { type: "job"; id: number; job: CryptoJob };

/** Messages from a worker. `invalid`: the request was wrong (a CSR that does not verify). */
export type FromCryptoWorker =
  | { type: "ready" }
  | { type: "done"; id: number; value: unknown }
  | { type: "failed"; id: number; invalid: boolean; message: string };

interface Job {
  id: number;
  job: CryptoJob;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker;
  ready: boolean;
  inFlight: Map<number, Job>;
}

// Under tsx (tests, bin/meshkey.js) this file is crypto-pool.ts and the worker starts from a
// bootstrap that registers tsx's loader in the worker itself (as the mesh parse worker does);
// compiled to JavaScript, the worker's own .js runs as it is.
const WORKER_URL = import.meta.url.endsWith(".ts")
  ? new URL("./crypto-pool-worker.mjs", import.meta.url)
  : new URL("./crypto-pool-worker.js", import.meta.url);

export function createCryptoPool(options: CryptoPoolOptions = {}): CryptoPool {
  const size = options.workers ?? defaultCryptoWorkers();
  const maxQueued = options.maxQueuedJobs ?? DEFAULT_CRYPTO_POOL_QUEUE;
  if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`a crypto pool needs at least 1 worker, got ${size}`);
  if (!Number.isSafeInteger(maxQueued) || maxQueued < 0) throw new RangeError(`maxQueuedJobs must be a whole number >= 0, got ${maxQueued}`);

  const queue: Job[] = [];
  const slots = new Set<Slot>();
  const keys: Array<{ id: number; key: KeyObject }> = [];
  let nextId = 1;
  let closed = false;
  let restartDelay = RESTART_DELAY_MS;
  const restartTimers = new Set<NodeJS.Timeout>();

  // A worker keeps the process alive only while a job is owed to someone: one in flight on it,
  // or jobs queued while it is still starting.
  const updateRefs = () => {
    for (const s of slots) {
      if (s.inFlight.size > 0 || (!s.ready && queue.length > 0)) s.worker.ref();
      else s.worker.unref();
    }
  };

  const settle = (s: Slot, m: Exclude<FromCryptoWorker, { type: "ready" }>) => {
    const job = s.inFlight.get(m.id);
    if (!job) return;
    s.inFlight.delete(m.id);
    if (m.type === "done") job.resolve(m.value);
    else job.reject(m.invalid ? new InvalidRequestError(`bad CSR: ${m.message}`) : new Error(m.message));
  };

  // The worker is gone (crashed, terminated, or closed by us): its jobs are refused with `why`
  // and, unless the pool is closing, a new worker takes its place.
  const discard = (s: Slot, why: string) => {
    if (!slots.delete(s)) return;
    const jobs = [...s.inFlight.values()];
    s.inFlight.clear();
    void s.worker.terminate();
    for (const job of jobs) job.reject(closed ? new CryptoPoolClosedError("the crypto pool is closed; the job was not done") : new CryptoWorkerExitedError(why));
    if (closed) return;
    if (s.ready) {
      restartDelay = RESTART_DELAY_MS;
      start();
    } else {
      // It never got ready (a broken install, out of memory at start): no tight restart loop,
      // and while no worker is up, queued jobs are refused rather than left waiting.
      if (![...slots].some((o) => o.ready)) {
        for (const job of queue.splice(0)) job.reject(new CryptoWorkerExitedError(`no crypto worker is running: ${why}`));
      }
      const t = setTimeout(() => {
        restartTimers.delete(t);
        if (!closed) start();
      }, restartDelay);
      t.unref();
      restartTimers.add(t);
      restartDelay = Math.min(restartDelay * 2, MAX_RESTART_DELAY_MS);
    }
    updateRefs();
  };

  const start = () => {
    const worker = new Worker(WORKER_URL, {
      // Not the parent's flags (--import tsx): the bootstrap registers tsx, once.
      execArgv: [],
    });
    const s: Slot = { worker, ready: false, inFlight: new Map() };
    const thread = worker.threadId; // -1 once it has exited
    slots.add(s);
    // Messages wait in the worker's port until it listens: the keys arrive before any job.
    for (const k of keys) worker.postMessage({ type: "key", id: k.id, key: k.key } satisfies ToCryptoWorker);
    let failure: Error | undefined;
    worker.on("message", (m: FromCryptoWorker) => {
      if (!slots.has(s)) return;
      if (m.type === "ready") {
        s.ready = true;
        pump();
        return;
      }
      settle(s, m);
      pump();
    });
    worker.on("error", (err) => (failure = err));
    worker.on("exit", (code) => {
      discard(s, `the crypto worker (thread ${thread}) stopped (${failure ? failure.message : `exit code ${code}`}) before it answered; the job was not done`);
    });
    updateRefs();
  };

  function pump() {
    while (queue.length > 0) {
      let best: Slot | undefined;
      for (const s of slots) {
        if (s.ready && s.inFlight.size < IN_FLIGHT_PER_WORKER && (!best || s.inFlight.size < best.inFlight.size)) best = s;
      }
      if (!best) break;
      const job = queue.shift()!;
      best.inFlight.set(job.id, job);
      best.worker.postMessage({ type: "job", id: job.id, job: job.job } satisfies ToCryptoWorker);
    }
    updateRefs();
  }

  function submit<T>(job: CryptoJob): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (closed) return reject(new CryptoPoolClosedError("the crypto pool is closed; the job was not done"));
      queue.push({ id: nextId++, job, resolve: resolve as (v: unknown) => void, reject });
      pump();
      // Still waiting, beyond the bound: refused at once (it is the last one queued).
      if (queue.length > maxQueued) {
        queue.pop();
        updateRefs();
        reject(new CryptoPoolBusyError(`${maxQueued} crypto jobs are already waiting for a worker (the limit); retry later`));
      }
    });
  }

  for (let i = 0; i < size; i++) start();

  return {
    size,
    createKeyAndCsr: (keyType) => submit<KeyAndCsrPems>({ kind: "keyAndCsr", keyType }),
    addSigningKey(key) {
      if (key.type !== "private") throw new TypeError("addSigningKey needs a private KeyObject");
      const id = keys.length + 1;
      keys.push({ id, key });
      for (const s of slots) s.worker.postMessage({ type: "key", id, key } satisfies ToCryptoWorker);
      return {
        async verifyCsrAndSign(csrDer, tbs) {
          const der = await submit<Uint8Array>({ kind: "sign", signer: id, csrDer: ownBytes(csrDer), tbs: ownBytes(tbs) });
          return Buffer.from(der.buffer, der.byteOffset, der.byteLength);
        },
      };
    },
    load() {
      let inFlight = 0;
      let readyWorkers = 0;
      for (const s of slots) {
        inFlight += s.inFlight.size;
        if (s.ready) readyWorkers++;
      }
      return { queued: queue.length, inFlight, readyWorkers };
    },
    workerThreads: () => [...slots].map((s) => s.worker),
    async close() {
      if (closed) return;
      closed = true;
      for (const t of restartTimers) clearTimeout(t);
      restartTimers.clear();
      for (const job of queue.splice(0)) job.reject(new CryptoPoolClosedError("the crypto pool is closed; the job was not done"));
      const workers = [...slots].map((s) => s.worker);
      for (const s of [...slots]) discard(s, "closed");
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}
