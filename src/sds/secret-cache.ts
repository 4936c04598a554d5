// The node agent's state: one key + certificate per workload identity, shared by
// every stream of that identity, issued once however many streams ask at the same
// time, rotated before it expires and pushed to every watcher. It knows nothing of
// gRPC: the SDS server turns SecretItems into Envoy Secrets and watch callbacks
// into stream messages.
//
// Private keys live only in this process's memory: they are generated here, kept
// in the entry, handed to watchers, and never written anywhere.
import { createHash } from "node:crypto";
import { pino, type Logger } from "pino";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import {
  createKeyAndCsr as caCreateKeyAndCsr,
  readCertificateInfo as caReadCertificateInfo,
  fingerprintSha256,
} from "../ca/index.js";
import { CaProviderError, toCaProviderError, type CaProvider } from "./ca-provider.js";
import { servedSecretKind, spiffeIdOf, type SecretKind } from "../spiffe/index.js";
import {
  type AuthenticatedCaller,
  type CertificateInfo,
  type KeyAndCsr,
  type KeyType,
} from "./ca-types.js";

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

interface IssuedCert {
  privateKeyPem: string;
  chainPem: string;
  rootPem: string;
  info: CertificateInfo;
  rotateAt: number;
  items: Map<string, SecretItem>;
}

interface Watcher {
  name: string;
  kind: SecretKind;
  callbacks: WatchCallbacks;
}

interface Entry {
  spiffeId: string;
  token: string;
  tokenExpiresAt: number | undefined;
  cert: IssuedCert | undefined;
  issuing: Promise<void> | undefined;
  /** Set while a retry or a rotation is waiting for a fresh token. */
  rotationDue: boolean;
  watchers: Set<Watcher>;
  rotationTimer: TimerHandle | undefined;
  retryTimer: TimerHandle | undefined;
  idleTimer: TimerHandle | undefined;
  retryAttempt: number;
  lastError: { kind: string; message: string; at: number } | undefined;
  csrCount: number;
  /** Waiters of fetch() for the first certificate. */
  firstCert: Array<{ resolve: () => void; reject: (e: CaProviderError) => void }>;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
/** Series of meshkey_sds_identity_cert_expiry_seconds: the identities closest to expiry. */
const MAX_EXPIRY_SERIES = 50;

export function createSecretCache(options: SecretCacheOptions): SecretCache {
  const trustDomain = options.trustDomain;
  const keyType: KeyType = options.keyType ?? "ec-p256";
  const graceRatio = options.graceRatio ?? 0.5;
  if (!(graceRatio > 0 && graceRatio < 1)) throw new RangeError(`graceRatio must be in (0, 1), got ${graceRatio}`);
  const now = options.now ?? Date.now;
  const timers = options.timers ?? NODE_TIMERS;
  const idleTimeoutMs = options.idleTimeoutMs ?? 120_000;
  const retryInitialMs = options.retry?.initialMs ?? 200;
  const retryMaxMs = options.retry?.maxMs ?? 30_000;
  const makeKey = options.createKeyAndCsr ?? caCreateKeyAndCsr;
  const certInfo = options.readCertificateInfo ?? caReadCertificateInfo;
  const log = options.logger ?? pino({ level: "silent" });
  const registry = options.registry ?? new Registry();
  const entries = new Map<string, Entry>();
  const slots = createIssuanceSlots(options.maxConcurrentIssuance ?? 8);
  let derivedRoot: string | undefined;
  let pushedRoot: string | undefined = options.rootCertPem?.();
  let closed = false;

  const csrTotal = new Counter({
    name: "meshkey_sds_csr_total",
    help: "Certificate signing requests sent to the CA, by result",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  for (const result of ["success", "unavailable", "unauthenticated", "invalid"]) csrTotal.inc({ result }, 0);
  const csrSeconds = new Histogram({
    name: "meshkey_sds_csr_duration_seconds",
    help: "Time to generate a key and get its certificate signed",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  new Gauge({
    name: "meshkey_sds_identities",
    help: "Workload identities held in the secret cache",
    registers: [registry],
    collect() {
      this.set(entries.size);
    },
  });
  const renewalFailures = new Counter({
    name: "meshkey_sds_renewal_failures_total",
    help: "Renewals of a cached workload certificate that failed, by reason (unavailable, unauthenticated, invalid, token_expired)",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  for (const reason of ["unavailable", "unauthenticated", "invalid", "token_expired"]) renewalFailures.inc({ reason }, 0);
  new Gauge({
    name: "meshkey_sds_identity_cert_expiry_seconds",
    help: `Seconds until each identity's served certificate expires (the ${MAX_EXPIRY_SERIES} soonest to expire)`,
    labelNames: ["spiffe_id"] as const,
    registers: [registry],
    collect() {
      // Bounded: one series per identity would grow with every workload the node ever saw.
      this.reset();
      const soonest = [...entries.values()]
        .filter((e) => e.cert !== undefined)
        .map((e) => ({ spiffeId: e.spiffeId, notAfter: e.cert!.info.notAfter.getTime() }))
        .sort((a, b) => a.notAfter - b.notAfter)
        .slice(0, MAX_EXPIRY_SERIES);
      for (const e of soonest) this.set({ spiffe_id: e.spiffeId }, (e.notAfter - now()) / 1000);
    },
  });
  new Gauge({
    name: "meshkey_sds_cert_expiry_seconds",
    help: "Seconds until the earliest cached workload certificate expires",
    registers: [registry],
    collect() {
      let earliest = Infinity;
      for (const e of entries.values()) if (e.cert) earliest = Math.min(earliest, e.cert.info.notAfter.getTime());
      if (Number.isFinite(earliest)) this.set((earliest - now()) / 1000);
      else {
        // No certificate: no sample at all (an unlabelled gauge would otherwise read 0, "expired").
        this.reset();
        this.remove({});
      }
    },
  });

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

  function certItem(cert: IssuedCert, name: string): SecretItem {
    let item = cert.items.get(name);
    if (!item) {
      item = {
        name,
        kind: "tlsCertificate",
        version: cert.info.serialHex,
        certificateChainPem: cert.chainPem,
        privateKeyPem: cert.privateKeyPem,
      };
      cert.items.set(name, item);
    }
    return item;
  }

  function itemFor(entry: Entry, w: { name: string; kind: SecretKind }): SecretItem | undefined {
    if (w.kind === "validationContext") return rootItem(w.name);
    return entry.cert ? certItem(entry.cert, w.name) : undefined;
  }

  function entryFor(caller: AuthenticatedCaller, token: string): Entry {
    const spiffeId = spiffeIdOf(trustDomain, caller);
    const expiresAt = caller.expiresAt?.getTime();
    let entry = entries.get(spiffeId);
    if (!entry) {
      entry = {
        spiffeId,
        token,
        tokenExpiresAt: expiresAt,
        cert: undefined,
        issuing: undefined,
        rotationDue: false,
        watchers: new Set(),
        rotationTimer: undefined,
        retryTimer: undefined,
        idleTimer: undefined,
        retryAttempt: 0,
        lastError: undefined,
        csrCount: 0,
        firstCert: [],
      };
      entries.set(spiffeId, entry);
      return entry;
    }
    // A token at least as fresh as the cached one replaces it (Envoy re-reads its token file on reconnect).
    if (token !== entry.token && (expiresAt ?? Infinity) >= (entry.tokenExpiresAt ?? -Infinity)) {
      entry.token = token;
      entry.tokenExpiresAt = expiresAt;
      if (entry.rotationDue && !entry.issuing && !entry.retryTimer) {
        log.info({ spiffeId }, "fresh token arrived: renewing the due certificate");
        startIssuance(entry);
      }
    }
    return entry;
  }

  function tokenExpired(entry: Entry): boolean {
    return entry.tokenExpiresAt !== undefined && entry.tokenExpiresAt <= now();
  }

  function clearTimer(t: TimerHandle | undefined): undefined {
    if (t) timers.clearTimeout(t);
    return undefined;
  }

  function startIssuance(entry: Entry): Promise<void> {
    if (closed) return Promise.resolve();
    entry.issuing ??= issue(entry).finally(() => {
      entry.issuing = undefined;
    });
    return entry.issuing;
  }

  async function issue(entry: Entry): Promise<void> {
    entry.retryTimer = clearTimer(entry.retryTimer);
    const release = await slots.acquire(entry.cert === undefined);
    const started = now();
    const t0 = performance.now();
    entry.csrCount++;
    try {
      if (closed) return;
      const { privateKeyPem, csrPem } = await makeKey(keyType);
      let chain: string[];
      try {
        chain = await options.caProvider.sign(csrPem, entry.token, options.certTtlSeconds);
      } catch (err) {
        throw toCaProviderError(err);
      }
      const cert = acceptChain(entry, chain, privateKeyPem);
      if (closed) return;
      csrTotal.inc({ result: "success" });
      csrSeconds.observe((performance.now() - t0) / 1000);
      entry.cert = cert;
      entry.rotationDue = false;
      entry.retryAttempt = 0;
      entry.lastError = undefined;
      log.info(
        { spiffeId: entry.spiffeId, serial: cert.info.serialHex, notAfter: cert.info.notAfter.toISOString() },
        "workload certificate issued",
      );
      scheduleRotation(entry);
      for (const w of entry.watchers) if (w.kind === "tlsCertificate") w.callbacks.onUpdate(certItem(cert, w.name));
      for (const waiter of entry.firstCert.splice(0)) waiter.resolve();
      if (cert.rootPem !== derivedRoot) {
        derivedRoot = cert.rootPem;
        notifyRootChanged();
      }
    } catch (raw) {
      const err = toCaProviderError(raw);
      csrTotal.inc({ result: err.kind });
      entry.lastError = { kind: err.kind, message: err.message, at: started };
      if (closed) return;
      onIssueFailure(entry, err);
    } finally {
      release();
    }
  }

  function acceptChain(entry: Entry, chain: string[], privateKeyPem: string): IssuedCert {
    const pems = chain.map((c) => c.trim()).filter((c) => c.length > 0);
    const leaf = pems[0];
    if (leaf === undefined) throw new CaProviderError("CA returned an empty certificate chain", "invalid");
    let info: CertificateInfo;
    try {
      info = certInfo(leaf);
    } catch (err) {
      throw new CaProviderError(`CA returned an unreadable certificate: ${(err as Error).message}`, "invalid");
    }
    // Never hand a workload a certificate for another identity, whatever the CA says.
    if (!info.uriSans.includes(entry.spiffeId)) {
      throw new CaProviderError(
        `CA returned a certificate for ${info.uriSans.join(", ") || "no URI SAN"}, expected ${entry.spiffeId}`,
        "invalid",
      );
    }
    // Lifetime as seen from here: a CA that backdates notBefore (clock-skew allowance) does not
    // make the certificate renew earlier than graceRatio of the time it actually has left.
    const lifetime = info.notAfter.getTime() - Math.max(info.notBefore.getTime(), now());
    const ratio = graceRatio + (Math.random() * 2 - 1) * 0.01;
    const rotateAt = info.notAfter.getTime() - ratio * lifetime;
    return {
      privateKeyPem,
      chainPem: pems.map((p) => `${p}\n`).join(""),
      rootPem: `${pems[pems.length - 1]}\n`,
      info,
      rotateAt,
      items: new Map(),
    };
  }

  function onIssueFailure(entry: Entry, err: CaProviderError): void {
    const ca = options.caProvider.endpoint;
    if (entry.cert) {
      renewalFailures.inc({ reason: err.kind });
      const expiresInSeconds = Math.round((entry.cert.info.notAfter.getTime() - now()) / 1000);
      log.warn(
        { spiffeId: entry.spiffeId, ca, kind: err.kind, err: err.message, serial: entry.cert.info.serialHex, expiresInSeconds },
        expiresInSeconds > 0
          ? `certificate renewal failed (${ca ?? "CA"}): still serving the current certificate, which expires in ${expiresInSeconds} s`
          : `certificate renewal failed (${ca ?? "CA"}): the served certificate has expired`,
      );
    } else {
      log.warn({ spiffeId: entry.spiffeId, ca, kind: err.kind, err: err.message }, "certificate signing failed");
    }
    if (err.kind === "unauthenticated" || (err.kind === "invalid" && !entry.cert)) {
      // Retrying with this token or this request cannot help. With a cached certificate, end the
      // streams so that Envoy reconnects with the token it has now (a fresher token on any new
      // stream restarts the renewal); without one, fail the waiting streams.
      entry.rotationDue = entry.cert !== undefined;
      for (const waiter of entry.firstCert.splice(0)) waiter.reject(err);
      for (const w of [...entry.watchers]) {
        if (entry.cert) w.callbacks.onRevoked(`CA rejected the workload token: ${err.message}`);
        else if (w.kind === "tlsCertificate" || currentRoot() === undefined) w.callbacks.onFailed(err);
      }
      if (entry.watchers.size === 0) armIdle(entry);
      return;
    }
    // Transient (or a rejected renewal while a valid certificate is cached): keep serving what we
    // have and try again with exponential backoff and jitter, until the CA is back.
    if (entry.watchers.size === 0 && entry.firstCert.length === 0) {
      armIdle(entry);
      return;
    }
    let base = Math.min(retryMaxMs, retryInitialMs * 2 ** entry.retryAttempt);
    // Never sleep through the end of the served certificate: as expiry nears, retry more often
    // (at most a quarter of the validity left), so that a CA back just before expiry is used.
    const validityLeftMs = entry.cert ? entry.cert.info.notAfter.getTime() - now() : 0;
    if (validityLeftMs > 0) base = Math.min(base, Math.max(retryInitialMs, validityLeftMs / 4));
    entry.retryAttempt++;
    const delay = base / 2 + Math.random() * (base / 2);
    entry.retryTimer = clearTimer(entry.retryTimer);
    entry.retryTimer = timers.setTimeout(() => {
      entry.retryTimer = undefined;
      if (entries.get(entry.spiffeId) !== entry) return;
      if (entry.watchers.size === 0 && entry.firstCert.length === 0) return armIdle(entry);
      if (entry.cert && tokenExpired(entry)) return revokeForExpiredToken(entry);
      void startIssuance(entry);
    }, delay);
  }

  function scheduleRotation(entry: Entry): void {
    entry.rotationTimer = clearTimer(entry.rotationTimer);
    const cert = entry.cert;
    if (!cert) return;
    // At least a second, so that a CA handing out nearly expired certificates cannot make us spin.
    const delay = Math.max(1_000, cert.rotateAt - now());
    entry.rotationTimer = timers.setTimeout(() => {
      entry.rotationTimer = undefined;
      if (entries.get(entry.spiffeId) !== entry || entry.cert !== cert) return;
      if (cert.rotateAt - now() > MAX_TIMER_MS) return scheduleRotation(entry); // a delay longer than a timer can hold
      onRotationDue(entry);
    }, Math.min(delay, MAX_TIMER_MS));
  }

  function onRotationDue(entry: Entry): void {
    if (entry.watchers.size === 0) {
      drop(entry, "no watcher at rotation");
      return;
    }
    if (tokenExpired(entry)) return revokeForExpiredToken(entry);
    log.info({ spiffeId: entry.spiffeId }, "rotating workload certificate");
    void startIssuance(entry);
  }

  function revokeForExpiredToken(entry: Entry): void {
    if (!entry.rotationDue) renewalFailures.inc({ reason: "token_expired" });
    entry.rotationDue = true;
    log.info({ spiffeId: entry.spiffeId }, "token expired at rotation: closing streams so that Envoy reconnects");
    for (const w of [...entry.watchers]) w.callbacks.onRevoked("workload token expired; reconnect with a fresh token");
  }

  function armIdle(entry: Entry): void {
    entry.idleTimer = clearTimer(entry.idleTimer);
    entry.idleTimer = timers.setTimeout(() => {
      entry.idleTimer = undefined;
      if (entry.watchers.size > 0 || entry.firstCert.length > 0) return;
      if (entry.issuing) armIdle(entry);
      else drop(entry, "idle");
    }, idleTimeoutMs);
  }

  function drop(entry: Entry, why: string): void {
    entry.rotationTimer = clearTimer(entry.rotationTimer);
    entry.retryTimer = clearTimer(entry.retryTimer);
    entry.idleTimer = clearTimer(entry.idleTimer);
    if (entries.get(entry.spiffeId) === entry) entries.delete(entry.spiffeId);
    log.debug({ spiffeId: entry.spiffeId, why }, "identity dropped from the secret cache");
  }

  function needsCert(kind: SecretKind): boolean {
    return kind === "tlsCertificate" || currentRoot() === undefined;
  }

  function ensure(entry: Entry, kind: SecretKind): void {
    if (!needsCert(kind)) return;
    if (entry.cert && !entry.rotationDue) return;
    if (entry.issuing || entry.retryTimer) return;
    if (entry.cert && entry.rotationDue && tokenExpired(entry)) return; // still waiting for a fresh token
    void startIssuance(entry);
  }

  function watch(caller: AuthenticatedCaller, token: string, name: string, callbacks: WatchCallbacks): SecretWatch | undefined {
    if (closed) throw new Error("secret cache is closed");
    const kind = resolve(caller, name);
    if (!kind) return undefined;
    const entry = entryFor(caller, token);
    entry.idleTimer = clearTimer(entry.idleTimer);
    const watcher: Watcher = { name, kind, callbacks };
    entry.watchers.add(watcher);
    ensure(entry, kind);
    // Renewal is waiting for a fresh token and this stream brought the expired one (accepted
    // within the verifier's leeway): send it back too, until Envoy's file holds a new token.
    // It gets nothing first: a response would reset Envoy's retry backoff, and Envoy would
    // reconnect in a tight loop (several streams a second) until its token file is refreshed.
    const sendBack = entry.cert !== undefined && entry.rotationDue && tokenExpired(entry);
    if (sendBack) {
      setImmediate(() => {
        if (entry.watchers.has(watcher)) callbacks.onRevoked("workload token expired; reconnect with a fresh token");
      });
    }
    let cancelled = false;
    return {
      name,
      kind,
      spiffeId: entry.spiffeId,
      current: () => (sendBack ? undefined : itemFor(entry, watcher)),
      cancel() {
        if (cancelled) return;
        cancelled = true;
        entry.watchers.delete(watcher);
        if (entry.watchers.size === 0 && entries.get(entry.spiffeId) === entry) armIdle(entry);
      },
    };
  }

  async function fetch(caller: AuthenticatedCaller, token: string, name: string, signal?: AbortSignal) {
    if (closed) throw new Error("secret cache is closed");
    const kind = resolve(caller, name);
    if (!kind) return undefined;
    const entry = entryFor(caller, token);
    entry.idleTimer = clearTimer(entry.idleTimer);
    try {
      const have = itemFor(entry, { name, kind });
      if (have) return have;
      ensure(entry, kind);
      await new Promise<void>((res, rej) => {
        const waiter = {
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
          const i = entry.firstCert.indexOf(waiter);
          if (i >= 0) entry.firstCert.splice(i, 1);
          rej(signal?.reason ?? new Error("aborted"));
        };
        if (signal?.aborted) return onAbort();
        signal?.addEventListener("abort", onAbort, { once: true });
        entry.firstCert.push(waiter);
      });
      return itemFor(entry, { name, kind });
    } finally {
      if (entry.watchers.size === 0 && entry.firstCert.length === 0 && entries.get(entry.spiffeId) === entry) armIdle(entry);
    }
  }

  function notifyRootChanged(): void {
    const pem = currentRoot();
    if (pem === undefined || pem === pushedRoot) return;
    const first = pushedRoot === undefined;
    pushedRoot = pem;
    if (!first) log.info({ fingerprint: rootFingerprintOf(pem) }, "trust bundle changed: pushing to every bundle watcher");
    for (const entry of entries.values()) {
      for (const w of entry.watchers) {
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
      const entry = entries.get(spiffeId);
      if (!entry) throw new Error(`no cached identity ${spiffeId}`);
      await startIssuance(entry);
    },
    debug() {
      const root = currentRoot();
      return {
        trustDomain,
        rootFingerprint: root === undefined ? undefined : rootFingerprintOf(root),
        identities: [...entries.values()].map((e) => ({
          spiffeId: e.spiffeId,
          serialHex: e.cert?.info.serialHex,
          notBefore: e.cert?.info.notBefore.toISOString(),
          notAfter: e.cert?.info.notAfter.toISOString(),
          rotateAt: e.cert ? new Date(e.cert.rotateAt).toISOString() : undefined,
          watchers: e.watchers.size,
          issuing: e.issuing !== undefined,
          tokenExpiresAt: e.tokenExpiresAt === undefined ? undefined : new Date(e.tokenExpiresAt).toISOString(),
          lastError: e.lastError && { ...e.lastError, at: new Date(e.lastError.at).toISOString() },
          csrCount: e.csrCount,
        })),
      };
    },
    close() {
      closed = true;
      for (const entry of [...entries.values()]) {
        for (const waiter of entry.firstCert.splice(0)) waiter.reject(new CaProviderError("secret cache closed", "unavailable"));
        drop(entry, "closed");
      }
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

/** A small semaphore with two priorities; every grant comes in a fresh macrotask. */
function createIssuanceSlots(max: number): { acquire(urgent: boolean): Promise<() => void> } {
  if (!(max >= 1)) throw new RangeError(`maxConcurrentIssuance must be at least 1, got ${max}`);
  let busy = 0;
  const urgent: Array<() => void> = [];
  const normal: Array<() => void> = [];
  const pump = () => {
    while (busy < max) {
      const next = urgent.shift() ?? normal.shift();
      if (!next) return;
      busy++;
      setImmediate(next);
    }
  };
  return {
    acquire(isUrgent) {
      return new Promise((resolve) => {
        (isUrgent ? urgent : normal).push(() => {
          let released = false;
          resolve(() => {
            if (released) return;
            released = true;
            busy--;
            pump();
          });
        });
        pump();
      });
    },
  };
}
