// Whether the upstream CA (--ca-provider istio|vault) can be reached now: the provider's cheap
// probe, run at start and then periodically, each attempt bounded by a timeout. /readyz reads
// it, so that an agent whose CA is gone says so instead of answering 200.
import { pino, type Logger } from "pino";
import { Gauge, Registry } from "prom-client";
import type { CaProvider } from "./ca-provider.js";

export interface CaReachabilityOptions {
  provider: CaProvider;
  /** Between two probes (default 5 s). */
  intervalMs?: number;
  /** One probe's deadline (default 2 s). */
  timeoutMs?: number;
  logger?: Logger;
  registry?: Registry;
}

export interface CaReachability {
  /** The last probe's answer (false until the first one succeeds). */
  reachable(): boolean;
  /** Probes now; resolves with the answer (used at start and by tests). */
  check(): Promise<boolean>;
  stop(): void;
}

/** Undefined for a provider with nothing to probe (the in-process CA). */
export function createCaReachability(options: CaReachabilityOptions): CaReachability | undefined {
  const { provider } = options;
  const probe = provider.probe?.bind(provider);
  if (!probe) return undefined;
  const intervalMs = options.intervalMs ?? 5_000;
  const timeoutMs = options.timeoutMs ?? 2_000;
  const log = options.logger ?? pino({ level: "silent" });
  const ca = provider.endpoint ?? "upstream CA";
  let reachable = false;
  let known = false;
  let inFlight: Promise<boolean> | undefined;
  let stopped = false;

  new Gauge({
    name: "meshkey_sds_upstream_ca_reachable",
    help: "1 when the last probe of the upstream CA (istio: TLS handshake; vault: /v1/sys/health) succeeded",
    registers: [options.registry ?? new Registry()],
    collect() {
      this.set(reachable ? 1 : 0);
    },
  });

  function check(): Promise<boolean> {
    inFlight ??= (async () => {
      let ok = false;
      let why = "";
      try {
        await probe!(AbortSignal.timeout(timeoutMs));
        ok = true;
      } catch (err) {
        why = (err as Error).message;
      }
      if (!stopped && (ok !== reachable || !known)) {
        if (ok) log.info({ ca }, `${ca} is reachable`);
        else log.warn({ ca, err: why }, `${ca} is unreachable: not ready, certificates cannot be issued or renewed`);
      }
      reachable = ok;
      known = true;
      return ok;
    })().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  }

  void check();
  const timer = setInterval(() => void check(), intervalMs);
  timer.unref();
  return {
    reachable: () => reachable,
    check,
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
