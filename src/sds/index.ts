// The SDS node agent: secret cache (keys in memory, one certificate per identity,
// rotation), CA providers (builtin, istio, vault) and the SDS server on a Unix socket.
//
// Wiring (meshkey serve):
//   const pool = createCryptoPool();                                       // src/ca: keys, CSRs, signatures off the main thread
//   const agentAuthenticator = withVerifiedTokenMemo(authenticator);       // one verification per issuance, SDS + builtin CA
//   const caProvider = createBuiltinCaProvider({ ca, authenticator: agentAuthenticator }); // or createIstioCaProvider / createVaultCaProvider
//   const cache = createSecretCache({ caProvider, trustDomain, keyType, graceRatio, certTtlSeconds,
//                                     createKeyAndCsr: pool.createKeyAndCsr, rootCertPem: () => ca.rootCertPem, logger, registry });
//   const sds = await startSdsServer({ socketPath, cache, authenticator: agentAuthenticator, logger, registry });
//   ... /debug/sds → sds.debug(); a new root → cache.notifyRootChanged()
//   shutdown: await sds.close(); cache.close(); await caProvider.close?.();
// The socket is mode 0666 so that every sidecar can connect: protect its DIRECTORY (see uds-socket.ts).
export {
  CaProviderError,
  createBuiltinCaProvider,
  type CaProvider,
  type CaFailureKind,
  type BuiltinCaProviderOptions,
} from "./ca-provider.js";
export { createCaReachability, type CaReachability, type CaReachabilityOptions } from "./ca-reachability.js";
export { createIstioCaProvider, type IstioCaProviderOptions } from "./istio-ca-provider.js";
export { createVaultCaProvider, type VaultCaProviderOptions } from "./vault-ca-provider.js";
export {
  createSecretCache,
  type SecretCache,
  type SecretCacheOptions,
  type SecretCacheDebug,
  type SecretItem,
  type SecretWatch,
  type WatchCallbacks,
  type IdentityDebug,
  type CacheTimers,
  type TimerHandle,
} from "./secret-cache.js";
export {
  startSdsServer,
  type SdsServerOptions,
  type RunningSdsServer,
  type SdsDebugSnapshot,
  type SdsStreamDebug,
} from "./sds-server.js";
export { prepareSocketDirectory, SocketPathError, type SocketDirectory } from "./uds-socket.js";
export {
  MAX_NAMES_PER_STREAM,
  MAX_NAME_BYTES,
  MAX_STREAMS_PER_IDENTITY,
} from "./stream-subscriptions.js";
