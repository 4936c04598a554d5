// Admin endpoints: /healthz, /readyz, /metrics, /debug/*.
export {
  startAdminServer,
  DebugPageError,
  type AdminServerOptions,
  type DebugPage,
  type ReadinessReport,
  type RunningAdminServer,
} from "./admin-server.js";
