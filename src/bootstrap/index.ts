// Envoy bootstrap generator: Handlebars templates (templates/) → validated Bootstrap.
export {
  renderBootstrap,
  BootstrapError,
  BOOTSTRAP_ROLES,
  type BootstrapRole,
  type BootstrapOptions,
  type RenderedBootstrap,
} from "./render-bootstrap.js";
