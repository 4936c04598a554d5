// What the secret cache reports as it works, for the books to keep (secret-cache-metrics.ts):
// the cache calls these and knows nothing of prom-client.
import type { CaFailureKind } from "./ca-provider.js";

export interface SecretCacheEvents {
  /** A certificate was issued, `seconds` after its issuance got its turn (key generation included). */
  issued(event: { spiffeId: string; renewal: boolean; seconds: number }): void;
  /** A signing request failed; `renewal`: a certificate is still served. */
  failed(event: { spiffeId: string; kind: CaFailureKind; renewal: boolean }): void;
  /** A renewal was due but the cached token had expired: no request was sent, the streams were sent back. */
  tokenExpired(event: { spiffeId: string }): void;
}
