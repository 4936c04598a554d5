// One workload identity in the secret cache: its key and certificate, the streams that
// watch it, and where it is in its life. The state is one SlotState value; a timer
// belongs to the one state that armed it and is cleared when that state is left; every
// change of state starts in on(), one case per event:
//
//   new            wanted (a certificate)            → issuing
//   issuing        issued                            → serving: pushed to watchers, fetches answered
//                  failed, unauthenticated (or
//                    invalid with no certificate)    → awaitingToken, streams revoked | new, streams failed
//                  failed, otherwise                 → retrying (idle if nobody waits)
//   serving        rotationDue                       → issuing | awaitingToken if the token expired
//                                                       (| serving, re-armed, if rotateAt is beyond one timer)
//   retrying       retryDue                          → issuing | awaitingToken if the token expired | idle
//   awaitingToken  arrived with a fresher token, or
//                    wanted with an unexpired one    → issuing
//   new, serving,
//   awaitingToken  released (nobody left)            → idle
//   idle           arrived                           → what it was before (new, serving, awaitingToken)
//                  idleTimeout                       → dropped
//   not issuing,
//   not dropped    rotateNow                         → issuing
//   any            close                             → dropped, fetches rejected
//
// Private keys live only in this process's memory: made by the cache's key factory, kept
// in the state's certificate, handed to watchers, and never written anywhere.
import type { Logger } from "pino";
import type { SecretKind } from "../spiffe/index.js";
import { CaProviderError } from "./ca-provider.js";
import type { CertificateInfo } from "./ca-types.js";
import { MAX_TIMER_MS, retryDelay, rotationDelay, rotationDue } from "./rotation-policy.js";
import type { SecretCacheEvents } from "./secret-cache-events.js";
import type { CacheTimers, SecretItem, TimerHandle, WatchCallbacks } from "./secret-cache.js";

/** A private key and the chain issued for it. */
export interface IssuedCert {
  readonly privateKeyPem: string;
  readonly chainPem: string;
  readonly rootPem: string;
  readonly info: CertificateInfo;
  /** When it is renewed (rotation-policy.ts). */
  readonly rotateAt: number;
  /** One item per requested name, built once, so that every stream shares it (and its encoding). */
  readonly items: Map<string, SecretItem>;
}

export interface Watcher {
  readonly name: string;
  readonly kind: SecretKind;
  readonly callbacks: WatchCallbacks;
}

/** A fetch() waiting for the identity's first certificate. */
export interface FetchWaiter {
  resolve(): void;
  reject(err: CaProviderError): void;
}

/**
 * Where an identity is. `cert`, wherever it appears, is the certificate served meanwhile.
 * `revoked`: the streams were sent back for a fresh token (awaitingToken) and no renewal has
 * succeeded since, so a stream still bringing the expired token is sent back too, and a second
 * expiry is not counted again.
 */
export type SlotState =
  /** No certificate and nothing in flight: just created, or its first issuance was refused. */
  | { readonly kind: "new" }
  /** A key is being generated and signed (`done` settles when the outcome is handled). */
  | {
      readonly kind: "issuing";
      readonly cert: IssuedCert | undefined;
      readonly attempt: number;
      readonly revoked: boolean;
      readonly done: Promise<void>;
    }
  /** The certificate is served; the timer renews it at cert.rotateAt. */
  | { readonly kind: "serving"; readonly cert: IssuedCert; readonly timer: TimerHandle }
  /** The last issuance failed and retrying can help: the timer tries again (backoff). */
  | {
      readonly kind: "retrying";
      readonly cert: IssuedCert | undefined;
      /** Failed attempts since the last success. */
      readonly attempt: number;
      readonly revoked: boolean;
      readonly timer: TimerHandle;
    }
  /** Renewal needs a fresh token (the cached one expired, or the CA rejected it); no timer: a stream brings it. */
  | { readonly kind: "awaitingToken"; readonly cert: IssuedCert }
  /** Nothing watches it: the timer drops it (at the idle timeout, or at its rotation time if sooner). */
  | { readonly kind: "idle"; readonly cert: IssuedCert | undefined; readonly revoked: boolean; readonly timer: TimerHandle }
  /** Evicted or closed, and forgotten by the cache: what still arrives (an issuance in flight) is ignored. */
  | { readonly kind: "dropped"; readonly cert: IssuedCert | undefined };

export type SlotKind = SlotState["kind"];

export type SlotEvent =
  /** A watch or fetch of this identity arrived with its stream's token. */
  | { readonly type: "arrived"; readonly token: string; readonly tokenExpiresAt: number | undefined }
  /** A watcher, or a fetch with nothing to return yet, asks for a secret of this kind. */
  | { readonly type: "wanted"; readonly kind: SecretKind }
  /** A watcher or fetch went away. */
  | { readonly type: "released" }
  /** Renew now (operators, tests). */
  | { readonly type: "rotateNow" }
  | { readonly type: "issued"; readonly cert: IssuedCert }
  | { readonly type: "failed"; readonly error: CaProviderError }
  /** serving's timer. */
  | { readonly type: "rotationDue" }
  /** retrying's timer. */
  | { readonly type: "retryDue" }
  /** idle's timer. */
  | { readonly type: "idleTimeout" }
  | { readonly type: "close" };

/** What a slot needs from the cache that holds it. */
export interface SlotEnvironment {
  readonly now: () => number;
  readonly timers: CacheTimers;
  readonly idleTimeoutMs: number;
  readonly retry: { readonly initialMs: number; readonly maxMs: number };
  readonly log: Logger;
  /** Where the CA signs now, for logs. */
  caEndpoint(): string | undefined;
  readonly events: SecretCacheEvents;
  /**
   * Generates a key and gets it signed with the slot's token. Settles in a later macrotask (its
   * turn in the issuance queue); undefined when the cache closed meanwhile; throws CaProviderError.
   */
  issue(slot: IdentitySlot): Promise<IssuedCert | undefined>;
  /** Whether a watcher of this kind waits for this identity's certificate (its own, or the bundle derived from it). */
  needsCert(kind: SecretKind): boolean;
  /** A certificate reached the slot's watchers: the trust bundle may come from it. */
  certificateIssued(cert: IssuedCert): void;
  /** The slot was dropped: forget it. */
  forget(slot: IdentitySlot): void;
}

export interface IdentitySlot {
  readonly spiffeId: string;
  /** The freshest token seen for this identity: issuances are signed with it. */
  readonly token: string;
  readonly tokenExpiresAt: number | undefined;
  readonly state: SlotState;
  /** The certificate served now, whatever the state. */
  readonly cert: IssuedCert | undefined;
  /** The cache adds and removes these, then tells the slot (arrived, wanted, released). */
  readonly watchers: Set<Watcher>;
  readonly waiters: FetchWaiter[];
  /** Written by the issuer: the last failed issuance (cleared by a success), and the CSRs sent. */
  lastError: { kind: string; message: string; at: number } | undefined;
  csrCount: number;
  /** Some watcher or fetch is waiting on this identity. */
  wanted(): boolean;
  /** A stream of this identity is sent back, unserved: its renewal waits for a fresh token and the cached one has expired. */
  sendsBack(): boolean;
  on(event: SlotEvent): void;
}

export function createIdentitySlot(
  spiffeId: string,
  initialToken: string,
  initialTokenExpiresAt: number | undefined,
  env: SlotEnvironment,
): IdentitySlot {
  const { now, timers, log } = env;
  let token = initialToken;
  let tokenExpiresAt = initialTokenExpiresAt;
  let state: SlotState = { kind: "new" };
  const watchers = new Set<Watcher>();
  const waiters: FetchWaiter[] = [];

  const slot: IdentitySlot = {
    spiffeId,
    get token() {
      return token;
    },
    get tokenExpiresAt() {
      return tokenExpiresAt;
    },
    get state() {
      return state;
    },
    get cert() {
      return state.kind === "new" ? undefined : state.cert;
    },
    watchers,
    waiters,
    lastError: undefined,
    csrCount: 0,
    wanted: () => watchers.size > 0 || waiters.length > 0,
    sendsBack: () => slot.cert !== undefined && awaitsToken(state) && tokenExpired(),
    on,
  };

  function on(event: SlotEvent): void {
    const s = state;
    switch (event.type) {
      case "arrived": {
        const fresher = takeToken(event.token, event.tokenExpiresAt);
        if (s.kind === "idle") enter(resume(s.cert, s.revoked));
        if (fresher && state.kind === "awaitingToken") {
          log.info({ spiffeId }, "fresh token arrived: renewing the due certificate");
          startIssuance(0, true);
        }
        return;
      }
      case "wanted":
        if (!env.needsCert(event.kind)) return;
        if (s.kind === "new") startIssuance(0, false);
        // A token that has not expired (the CA rejected it for another reason) is tried again; a
        // stream with the expired one is sent back (sendsBack) until Envoy's file holds a new one.
        else if (s.kind === "awaitingToken" && !tokenExpired()) startIssuance(0, true);
        return;
      case "released":
        idleIfUnwanted();
        return;
      case "rotateNow":
        if (s.kind === "issuing" || s.kind === "dropped") return;
        startIssuance(s.kind === "retrying" ? s.attempt : 0, awaitsToken(s));
        return;
      case "issued": {
        if (s.kind !== "issuing") return; // dropped meanwhile: the cache closed
        const cert = event.cert;
        log.info({ spiffeId, serial: cert.info.serialHex, notAfter: cert.info.notAfter.toISOString() }, "workload certificate issued");
        enter(serving(cert));
        for (const w of [...watchers]) if (w.kind === "tlsCertificate") w.callbacks.onUpdate(certItem(cert, w.name));
        for (const waiter of waiters.splice(0)) waiter.resolve();
        env.certificateIssued(cert);
        idleIfUnwanted();
        return;
      }
      case "failed":
        if (s.kind === "issuing") onFailure(s, event.error);
        return;
      case "rotationDue":
        if (s.kind !== "serving") return;
        if (!rotationDue(s.cert.rotateAt, now())) return enter(serving(s.cert)); // further off than one timer holds
        if (tokenExpired()) return revokeForExpiredToken(s.cert, false);
        log.info({ spiffeId }, "rotating workload certificate");
        startIssuance(0, false);
        return;
      case "retryDue":
        if (s.kind !== "retrying") return;
        if (!slot.wanted()) return enter(idle(s.cert, s.revoked, env.idleTimeoutMs));
        if (s.cert && tokenExpired()) return revokeForExpiredToken(s.cert, s.revoked);
        startIssuance(s.attempt, s.revoked);
        return;
      case "idleTimeout":
        if (s.kind === "idle") drop("idle");
        return;
      case "close":
        for (const waiter of waiters.splice(0)) waiter.reject(new CaProviderError("secret cache closed", "unavailable"));
        if (s.kind !== "dropped") drop("closed");
        return;
    }
  }

  function onFailure(s: Extract<SlotState, { kind: "issuing" }>, err: CaProviderError): void {
    const { cert } = s;
    logFailure(cert, err);
    if (err.kind === "unauthenticated" || (err.kind === "invalid" && !cert)) {
      // Retrying with this token or this request cannot help. With a cached certificate, end the
      // streams so that Envoy reconnects with the token it has now (a fresher token on any new
      // stream restarts the renewal); without one, fail the waiting streams.
      enter(cert ? { kind: "awaitingToken", cert } : { kind: "new" });
      for (const waiter of waiters.splice(0)) waiter.reject(err);
      for (const w of [...watchers]) {
        if (cert) w.callbacks.onRevoked(`CA rejected the workload token: ${err.message}`);
        else if (env.needsCert(w.kind)) w.callbacks.onFailed(err);
      }
      idleIfUnwanted();
      return;
    }
    // Transient (or a rejected renewal while a valid certificate is cached): keep serving what we
    // have and try again with exponential backoff and jitter, until the CA is back. With nobody
    // waiting there is no retry: the next stream asks again.
    if (!slot.wanted()) return enter(idle(cert, s.revoked, env.idleTimeoutMs));
    const delay = retryDelay({
      attempt: s.attempt,
      initialMs: env.retry.initialMs,
      maxMs: env.retry.maxMs,
      validityLeftMs: cert ? cert.info.notAfter.getTime() - now() : 0,
      random: Math.random(),
    });
    enter({ kind: "retrying", cert, attempt: s.attempt + 1, revoked: s.revoked, timer: arm(delay, { type: "retryDue" }) });
  }

  function revokeForExpiredToken(cert: IssuedCert, alreadyRevoked: boolean): void {
    if (!alreadyRevoked) env.events.tokenExpired({ spiffeId });
    enter({ kind: "awaitingToken", cert });
    log.info({ spiffeId }, "token expired at rotation: closing streams so that Envoy reconnects");
    for (const w of [...watchers]) w.callbacks.onRevoked("workload token expired; reconnect with a fresh token");
    idleIfUnwanted();
  }

  /** Idles a slot that nobody waits on; an issuing or retrying one idles when its attempt ends. */
  function idleIfUnwanted(): void {
    if (slot.wanted()) return;
    const s = state;
    if (s.kind === "new") enter(idle(undefined, false, env.idleTimeoutMs));
    else if (s.kind === "awaitingToken") enter(idle(s.cert, true, env.idleTimeoutMs));
    // Nobody to renew for: dropped at the rotation time if that comes first.
    else if (s.kind === "serving") enter(idle(s.cert, false, Math.min(env.idleTimeoutMs, rotationDelay(s.cert.rotateAt, now()))));
  }

  function startIssuance(attempt: number, revoked: boolean): void {
    // env.issue settles in a later macrotask, by when this issuing state is set.
    const done = env
      .issue(slot)
      .then(
        (cert) => {
          if (cert) on({ type: "issued", cert });
        },
        (error: unknown) => on({ type: "failed", error: error as CaProviderError }),
      )
      .catch((err: unknown) => log.error({ spiffeId, err }, "a secret watcher failed while an issuance result was handled"));
    enter({ kind: "issuing", cert: slot.cert, attempt, revoked, done });
  }

  /** An idle slot comes back to what it was before nobody watched it. */
  function resume(cert: IssuedCert | undefined, revoked: boolean): SlotState {
    if (!cert) return { kind: "new" };
    return revoked ? { kind: "awaitingToken", cert } : serving(cert);
  }

  function serving(cert: IssuedCert): SlotState {
    return { kind: "serving", cert, timer: arm(rotationDelay(cert.rotateAt, now()), { type: "rotationDue" }) };
  }

  function idle(cert: IssuedCert | undefined, revoked: boolean, ms: number): SlotState {
    return { kind: "idle", cert, revoked, timer: arm(Math.min(ms, MAX_TIMER_MS), { type: "idleTimeout" }) };
  }

  function arm(ms: number, event: SlotEvent): TimerHandle {
    const handle = timers.setTimeout(() => {
      // Only while the state that armed it lasts (leaving a state clears its timer).
      if ("timer" in state && state.timer === handle) on(event);
    }, ms);
    return handle;
  }

  function enter(next: SlotState): void {
    if ("timer" in state) timers.clearTimeout(state.timer);
    state = next;
  }

  function drop(why: string): void {
    enter({ kind: "dropped", cert: slot.cert });
    env.forget(slot);
    log.debug({ spiffeId, why }, "identity dropped from the secret cache");
  }

  /** A token at least as fresh as the cached one replaces it (Envoy re-reads its token file on reconnect). */
  function takeToken(next: string, expiresAt: number | undefined): boolean {
    if (next === token || (expiresAt ?? Infinity) < (tokenExpiresAt ?? -Infinity)) return false;
    token = next;
    tokenExpiresAt = expiresAt;
    return true;
  }

  function tokenExpired(): boolean {
    return tokenExpiresAt !== undefined && tokenExpiresAt <= now();
  }

  function logFailure(cert: IssuedCert | undefined, err: CaProviderError): void {
    const ca = env.caEndpoint();
    if (!cert) {
      log.warn({ spiffeId, ca, kind: err.kind, err: err.message }, "certificate signing failed");
      return;
    }
    const expiresInSeconds = Math.round((cert.info.notAfter.getTime() - now()) / 1000);
    log.warn(
      { spiffeId, ca, kind: err.kind, err: err.message, serial: cert.info.serialHex, expiresInSeconds },
      expiresInSeconds > 0
        ? `certificate renewal failed (${ca ?? "CA"}): still serving the current certificate, which expires in ${expiresInSeconds} s`
        : `certificate renewal failed (${ca ?? "CA"}): the served certificate has expired`,
    );
  }

  return slot;
}

/** Whether the renewal waits on (or started from) a fresh token, after the streams were sent back for one. */
function awaitsToken(s: SlotState): boolean {
  if (s.kind === "awaitingToken") return true;
  return (s.kind === "issuing" || s.kind === "retrying" || s.kind === "idle") && s.revoked;
}

/** The certificate as the item named `name` (built once per name and certificate). */
export function certItem(cert: IssuedCert, name: string): SecretItem {
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
