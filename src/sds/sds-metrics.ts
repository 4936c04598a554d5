// The SDS server's Prometheus metrics, in one registry (the admin port's). Every series a
// reader may rate() exists from the start, at 0.
import { Counter, Gauge, type Registry } from "prom-client";

export interface SdsMetrics {
  activeStreams: Gauge<"rpc">;
  pushes: Counter<"kind">;
  pushErrors: Counter<"code">;
  nacks: Counter;
  unknownNames: Counter;
  refusedStreams: Counter<"limit">;
  connectionsClosed: Counter<"reason">;
  authFailures: Counter<"reason">;
}

export function createSdsMetrics(registry: Registry): SdsMetrics {
  const m: SdsMetrics = {
    activeStreams: new Gauge({
      name: "meshkey_sds_active_streams",
      help: "Open SDS streams",
      labelNames: ["rpc"] as const,
      registers: [registry],
    }),
    pushes: new Counter({
      name: "meshkey_sds_pushes_total",
      help: "Secrets sent to Envoy, by kind",
      labelNames: ["kind"] as const,
      registers: [registry],
    }),
    pushErrors: new Counter({
      name: "meshkey_sds_push_errors_total",
      help: "Streams ended by the server with an error, by status",
      labelNames: ["code"] as const,
      registers: [registry],
    }),
    nacks: new Counter({
      name: "meshkey_sds_nacks_total",
      help: "Responses rejected by Envoy (requests carrying error_detail)",
      registers: [registry],
    }),
    unknownNames: new Counter({
      name: "meshkey_sds_unknown_names_total",
      help: "Requested secret names this agent does not serve",
      registers: [registry],
    }),
    refusedStreams: new Counter({
      name: "meshkey_sds_streams_refused_total",
      help: "SDS streams refused at a limit, by limit",
      labelNames: ["limit"] as const,
      registers: [registry],
    }),
    connectionsClosed: new Counter({
      name: "meshkey_sds_connections_closed_total",
      help: "SDS socket connections closed by the server, by reason (max_connections, idle, ping_timeout)",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    authFailures: new Counter({
      name: "meshkey_sds_auth_failures_total",
      help: "SDS calls refused for a missing or invalid token",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
  };
  for (const kind of ["tlsCertificate", "validationContext"]) m.pushes.inc({ kind }, 0);
  for (const reason of ["missing", "invalid", "error"]) m.authFailures.inc({ reason }, 0);
  for (const reason of ["max_connections", "idle", "ping_timeout"]) m.connectionsClosed.inc({ reason }, 0);
  m.refusedStreams.inc({ limit: "streams_per_identity" }, 0);
  return m;
}
