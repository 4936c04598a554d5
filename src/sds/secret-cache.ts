// The node agent's state: one key + certificate per workload identity, shared by
// every stream of that identity, issued once however many streams ask at the same
// time, rotated before it expires and pushed to every watcher. It knows nothing of
// gRPC: the SDS server turns SecretItems into Envoy Secrets and watch callbacks
// into stream messages.
//
// This file holds the identities and answers watch/fetch; each identity's life is in
// identity-slot.ts, when to renew or retry in rotation-policy.ts, the checks of a CA's
// answer in accept-chain.ts, the bound on issuances in issuance-queue.ts, and the
// metrics in secret-cache-metrics.ts. Private keys live only in this process's memory.
import { createHash } from "node:crypto";
import { pino, type Logger } from "pino";
import { Registry } from "prom-client";
import {
  createKeyAndCsr as caCreateKeyAndCsr,
  readCertificateInfo as caReadCertificateInfo,
  fingerprintSha256,
} from "../ca/index.js";
import { acceptChain } from "./accept-chain.js";
import { toCaProviderError, type CaProvider, type CaProviderError } from "./ca-provider.js";
import { servedSecretKind, spiffeIdOf, type SecretKind } from "../spiffe/index.js";
import {
  type AuthenticatedCaller,
  type CertificateInfo,
  type KeyAndCsr,
  type KeyType,
} from "./ca-types.js";
import {
  certItem,
  createIdentitySlot,
  type FetchWaiter,
  type IdentitySlot,
  type IssuedCert,
  type SlotEnvironment,
  type SlotKind,
  type Watcher,
} from "./identity-slot.js";
import { createIssuanceQueue } from "./issuance-queue.js";
import { rotationTime } from "./rotation-policy.js";
import { createSecretCacheMetrics } from "./secret-cache-metrics.js";

/** One secret, named as it was requested. Plain data: the server builds the Envoy message. */
export interface SecretItem {
  readonly name: string;
  readonly kind: SecretKind;
  /** Content version: the certificate serial, or a digest of the bundle. */
  readonly version: string;
  /** Leaf first, then intermediates and the root (tlsCertificate). */
  readonly certificateChainPem?: string;
  readonly privateKeyPem?: string;
  /** Trust bundle (validationContext). */
  readonly trustedCaPem?: string;
}

export interface WatchCallbacks {
  /** A new version of the watched secret (after the watch was created). */
  onUpdate(item: SecretItem): void;
  /** The stream must end: the cached token expired at rotation, or the CA rejected it. */
  onRevoked(reason: string): void;
  /** The first certificate could not be issued and retrying cannot help. */
  onFailed(error: CaProviderError): void;
}

export interface SecretWatch {
  readonly name: string;
  readonly kind: SecretKind;
  readonly spiffeId: string;
  /** The secret as it is now; undefined while it is still being issued, or when the watch is being sent back. */
  current(): SecretItem | undefined;
  cancel(): void;
}

export interface SecretCacheOptions {
  caProvider: CaProvider;
  trustDomain: string;
  keyType?: KeyType;
  /** Fraction of the lifetime left when a certificate is renewed (default 0.5, ±1 % jitter). */
  graceRatio?: number;
  /** Requested certificate lifetime (the CA may apply its default and maximum). */
  certTtlSeconds?: number;
  /** The trust bundle; default: the last certificate of the most recent chain. */
  rootCertPem?: () => string | undefined;
  logger?: Logger;
  registry?: Registry;
  now?: () => number;
  /** Timer functions for rotation, retry and idle eviction (default: Node's, unref'd); a fake clock's in tests, with `now`. */
  timers?: CacheTimers;
  /** An identity with no watcher left is dropped after this long (default 120 s). */
  idleTimeoutMs?: number;
  /** Backoff for transient CA failures (default 200 ms doubling to 30 s, with jitter). */
  retry?: { initialMs?: number; maxMs?: number };
  /**
   * Issuances in flight at once (default 8). Each one yields to the event loop first, and a
   * workload waiting for its first certificate goes ahead of renewals, so that a renewal storm
   * (thousands of identities due together) neither blocks the process nor starves new streams.
   */
  maxConcurrentIssuance?: number;
  /** Key generation (default: the CA part's createKeyAndCsr). */
  createKeyAndCsr?: (keyType: KeyType) => Promise<KeyAndCsr>;
  readCertificateInfo?: (pem: string) => CertificateInfo;
}

/** A timer handle: any object (Node's Timeout, a fake clock's entry). */
export type TimerHandle = object;

export interface CacheTimers {
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** Node's timers, unref'd: a pending rotation or eviction never keeps the process alive. */
const NODE_TIMERS: CacheTimers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface IdentityDebug {
  spiffeId: string;
  serialHex: string | undefined;
  notBefore: string | undefined;
  notAfter: string | undefined;
  rotateAt: string | undefined;
  watchers: number;
  issuing: boolean;
  tokenExpiresAt: string | undefined;
  lastError: { kind: string; message: string; at: string } | undefined;
  csrCount: number;
  /** Where the identity is (identity-slot.ts): new, issuing, serving, retrying, awaitingToken or idle. Always set by the cache. */
  state?: SlotKind;
}

export interface SecretCacheDebug {
  trustDomain: string;
  identities: IdentityDebug[];
  rootFingerprint: string | undefined;
}

export interface SecretCache {
  readonly trustDomain: string;
  /** What a name means for this caller: its certificate, the trust bundle, or nothing (unknown). */
  resolve(caller: AuthenticatedCaller, name: string): SecretKind | undefined;
  /** Watches one name for a verified caller; undefined when the name is unknown. */
  watch(caller: AuthenticatedCaller, token: string, name: string, callbacks: WatchCallbacks): SecretWatch | undefined;
  /** One-shot read (waits for the first issuance); undefined for an unknown name. */
  fetch(caller: AuthenticatedCaller, token: string, name: string, signal?: AbortSignal): Promise<SecretItem | undefined>;
  /** Re-reads rootCertPem() and pushes a changed bundle to every trust-bundle watcher. */
  notifyRootChanged(): void;
  /** Renews one identity now (tests, operators); resolves when done or failed. */
  rotate(spiffeId: string): Promise<void>;
  debug(): SecretCacheDebug;
  close(): void;
}

export function createSecretCache(options: SecretCacheOptions): SecretCache {
  const trustDomain = options.trustDomain;
  const keyType: KeyType = options.keyType ?? "ec-p256";
  const graceRatio = options.graceRatio ?? 0.5;
  if (!(graceRatio > 0 && graceRatio < 1)) throw new RangeError(`graceRatio must be in (0, 1), got ${graceRatio}`);
  const now = options.now ?? Date.now;
  const makeKey = options.createKeyAndCsr ?? caCreateKeyAndCsr;
  const certInfo = options.readCertificateInfo ?? caReadCertificateInfo;
  const log = options.logger ?? pino({ level: "silent" });
  const slots = new Map<string, IdentitySlot>();
  const queue = createIssuanceQueue(options.maxConcurrentIssuance ?? 8);
  const events = createSecretCacheMetrics({ registry: options.registry ?? new Registry(), now, identities: slots });
  let derivedRoot: string | undefined;
  let pushedRoot: string | undefined = options.rootCertPem?.();
  let closed = false;

  const env: SlotEnvironment = {
    now,
    timers: options.timers ?? NODE_TIMERS,
    idleTimeoutMs: options.idleTimeoutMs ?? 120_000,
    retry: { initialMs: options.retry?.initialMs ?? 200, maxMs: options.retry?.maxMs ?? 30_000 },
    log,
    caEndpoint: () => options.caProvider.endpoint,
    events,
    issue,
    needsCert: (kind) => kind === "tlsCertificate" || currentRoot() === undefined,
    certificateIssued(cert) {
      if (cert.rootPem === derivedRoot) return;
      derivedRoot = cert.rootPem;
      notifyRootChanged();
    },
    forget(slot) {
      if (slots.get(slot.spiffeId) === slot) slots.delete(slot.spiffeId);
    },
  };

  function resolve(caller: AuthenticatedCaller, name: string): SecretKind | undefined {
    return servedSecretKind(name, { trustDomain, caller });
  }

  function currentRoot(): string | undefined {
    return options.rootCertPem?.() ?? derivedRoot;
  }

  /** One item per (bundle, name), so that every stream shares it (and its encoding). */
  let rootItems: { pem: string; version: string; byName: Map<string, SecretItem> } | undefined;
  function rootItem(name: string): SecretItem | undefined {
    const pem = currentRoot();
    if (pem === undefined) return undefined;
    if (rootItems?.pem !== pem) rootItems = { pem, version: digest(pem), byName: new Map() };
    let item = rootItems.byName.get(name);
    if (!item) {
      item = { name, kind: "validationContext", version: rootItems.version, trustedCaPem: pem };
      rootItems.byName.set(name, item);
    }
    return item;
  }

  function itemFor(slot: IdentitySlot, w: { name: string; kind: SecretKind }): SecretItem | undefined {
    if (w.kind === "validationContext") return rootItem(w.name);
    return slot.cert ? certItem(slot.cert, w.name) : undefined;
  }

  /** The caller's slot, created on first use, told that a stream arrived with `token`. */
  function slotFor(caller: AuthenticatedCaller, token: string): IdentitySlot {
    const spiffeId = spiffeIdOf(trustDomain, caller);
    const tokenExpiresAt = caller.expiresAt?.getTime();
    let slot = slots.get(spiffeId);
    if (!slot) {
      slot = createIdentitySlot(spiffeId, token, tokenExpiresAt, env);
      slots.set(spiffeId, slot);
    }
    slot.on({ type: "arrived", token, tokenExpiresAt });
    return slot;
  }

  async function issue(slot: IdentitySlot): Promise<IssuedCert | undefined> {
    const renewal = slot.cert !== undefined;
    const release = await queue.acquire(renewal ? "renewal" : "first");
    const started = now();
    const t0 = performance.now();
    slot.csrCount++;
    try {
      if (closed) return undefined;
      const { privateKeyPem, csrPem } = await makeKey(keyType);
      let chain: string[];
      try {
        chain = await options.caProvider.sign(csrPem, slot.token, options.certTtlSeconds);
      } catch (err) {
        throw toCaProviderError(err);
      }
      const accepted = acceptChain(chain, slot.spiffeId, certInfo);
      if (closed) return undefined;
      events.issued({ spiffeId: slot.spiffeId, renewal, seconds: (performance.now() - t0) / 1000 });
      slot.lastError = undefined;
      const rotateAt = rotationTime({
        notBefore: accepted.info.notBefore.getTime(),
        notAfter: accepted.info.notAfter.getTime(),
        now: now(),
        graceRatio,
        random: Math.random(),
      });
      return { privateKeyPem, ...accepted, rotateAt, items: new Map() };
    } catch (raw) {
      const err = toCaProviderError(raw);
      events.failed({ spiffeId: slot.spiffeId, kind: err.kind, renewal });
      slot.lastError = { kind: err.kind, message: err.message, at: started };
      throw err;
    } finally {
      release();
    }
  }

  function watch(caller: AuthenticatedCaller, token: string, name: string, callbacks: WatchCallbacks): SecretWatch | undefined {
    if (closed) throw new Error("secret cache is closed");
    const kind = resolve(caller, name);
    if (!kind) return undefined;
    const slot = slotFor(caller, token);
    const watcher: Watcher = { name, kind, callbacks };
    slot.watchers.add(watcher);
    slot.on({ type: "wanted", kind });
    // Renewal is waiting for a fresh token and this stream brought the expired one (accepted
    // within the verifier's leeway): send it back too, until Envoy's file holds a new token.
    // It gets nothing first: a response would reset Envoy's retry backoff, and Envoy would
    // reconnect in a tight loop (several streams a second) until its token file is refreshed.
    const sendBack = slot.sendsBack();
    if (sendBack) {
      setImmediate(() => {
        if (slot.watchers.has(watcher)) callbacks.onRevoked("workload token expired; reconnect with a fresh token");
      });
    }
    let cancelled = false;
    return {
      name,
      kind,
      spiffeId: slot.spiffeId,
      current: () => (sendBack ? undefined : itemFor(slot, watcher)),
      cancel() {
        if (cancelled) return;
        cancelled = true;
        slot.watchers.delete(watcher);
        slot.on({ type: "released" });
      },
    };
  }

  async function fetch(caller: AuthenticatedCaller, token: string, name: string, signal?: AbortSignal) {
    if (closed) throw new Error("secret cache is closed");
    const kind = resolve(caller, name);
    if (!kind) return undefined;
    const slot = slotFor(caller, token);
    try {
      const have = itemFor(slot, { name, kind });
      if (have) return have;
      slot.on({ type: "wanted", kind });
      await new Promise<void>((res, rej) => {
        const waiter: FetchWaiter = {
          resolve: () => {
            signal?.removeEventListener("abort", onAbort);
            res();
          },
          reject: (e: CaProviderError) => {
            signal?.removeEventListener("abort", onAbort);
            rej(e);
          },
        };
        const onAbort = () => {
          const i = slot.waiters.indexOf(waiter);
          if (i >= 0) slot.waiters.splice(i, 1);
          rej(signal?.reason ?? new Error("aborted"));
        };
        if (signal?.aborted) return onAbort();
        signal?.addEventListener("abort", onAbort, { once: true });
        slot.waiters.push(waiter);
      });
      return itemFor(slot, { name, kind });
    } finally {
      slot.on({ type: "released" });
    }
  }

  function notifyRootChanged(): void {
    const pem = currentRoot();
    if (pem === undefined || pem === pushedRoot) return;
    const first = pushedRoot === undefined;
    pushedRoot = pem;
    if (!first) log.info({ fingerprint: rootFingerprintOf(pem) }, "trust bundle changed: pushing to every bundle watcher");
    for (const slot of slots.values()) {
      for (const w of slot.watchers) {
        if (w.kind === "validationContext") w.callbacks.onUpdate(rootItem(w.name)!);
      }
    }
  }

  return {
    trustDomain,
    resolve,
    watch,
    fetch,
    notifyRootChanged,
    async rotate(spiffeId) {
      const slot = slots.get(spiffeId);
      if (!slot) throw new Error(`no cached identity ${spiffeId}`);
      slot.on({ type: "rotateNow" });
      if (slot.state.kind === "issuing") await slot.state.done;
    },
    debug() {
      const root = currentRoot();
      return {
        trustDomain,
        rootFingerprint: root === undefined ? undefined : rootFingerprintOf(root),
        identities: [...slots.values()].map((s) => ({
          spiffeId: s.spiffeId,
          serialHex: s.cert?.info.serialHex,
          notBefore: s.cert?.info.notBefore.toISOString(),
          notAfter: s.cert?.info.notAfter.toISOString(),
          rotateAt: s.cert ? new Date(s.cert.rotateAt).toISOString() : undefined,
          watchers: s.watchers.size,
          issuing: s.state.kind === "issuing",
          tokenExpiresAt: s.tokenExpiresAt === undefined ? undefined : new Date(s.tokenExpiresAt).toISOString(),
          lastError: s.lastError && { ...s.lastError, at: new Date(s.lastError.at).toISOString() },
          csrCount: s.csrCount,
          state: s.state.kind,
        })),
      };
    },
    close() {
      closed = true;
      for (const slot of [...slots.values()]) slot.on({ type: "close" });
    },
  };
}

function digest(pem: string): string {
  return createHash("sha256").update(pem).digest("hex").slice(0, 16);
}

/** The trust bundle's first root, fingerprinted as openssl prints it (undefined if it is not a PEM certificate). */
function rootFingerprintOf(pem: string): string | undefined {
  try {
    return fingerprintSha256(pem);
  } catch {
    return undefined;
  }
}
