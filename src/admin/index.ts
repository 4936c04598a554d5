// Admin endpoints: /healthz, /readyz, /metrics, /debug/*, and the status page (/, /status.json).
export {
  startAdminServer,
  DebugPageError,
  STATUS_PAGE_CSP,
  type AdminServerOptions,
  type DebugPage,
  type ReadinessReport,
  type RunningAdminServer,
} from "./admin-server.js";
export { renderStatusPage, text as escapeHtml } from "./status-page.js";
export type {
  ProxySyncState,
  StatusCounters,
  StatusIdentity,
  StatusMesh,
  StatusNack,
  StatusProxy,
  StatusSnapshot,
  StatusTypeSync,
} from "./status-model.js";
