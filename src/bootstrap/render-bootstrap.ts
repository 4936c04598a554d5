// Renders an Envoy v3 bootstrap from the Handlebars templates in templates/
// (one per role, partials in templates/partials/). Templates are compiled once
// per directory in strict mode (a missing variable is an error naming it) with
// HTML escaping off: every value goes through the `json` helper instead.
//
// The rendered JSON is parsed strictly into the Bootstrap message and validated
// (PGV rules + cross-references) before anything is printed, so a template bug
// cannot emit a config Envoy would reject for a schema reason.
import Handlebars from "handlebars";
import { isIP } from "node:net";
import { readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify as toYaml } from "yaml";
import { BootstrapSchema, type Bootstrap } from "../../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import { canonicalMessageJson, ConfigSchemaError, formatIssues, parseEnvoyConfig, validateParsedConfig } from "../envoy/index.js";
import { parseBootstrapJson } from "./parse-bootstrap-json.js";
import { CONTROL_PLANE_IDENTITY, controlPlaneDnsName } from "../ca/index.js";
import {
  DEFAULT_SDS_SOCKET,
  DEFAULT_SECRET_NAME,
  ROOT_SECRET_NAME,
  SDS_TOKEN_HEADER,
  spiffeIdOf,
  trustDomainId,
} from "../spiffe/index.js";

export type BootstrapRole = "sidecar" | "pilot" | "ingress" | "mixer-like";
export const BOOTSTRAP_ROLES: readonly BootstrapRole[] = ["sidecar", "pilot", "ingress", "mixer-like"];

export interface BootstrapOptions {
  role: BootstrapRole;
  /** Envoy node id (required). */
  nodeId: string;
  /** Workload namespace (default "default"; control-plane roles: "istio-system"). */
  namespace?: string;
  /** Workload service account (default "default"; control-plane roles: the role's own). */
  serviceAccount?: string;
  /** SPIFFE trust domain (default cluster.local). */
  trustDomain?: string;
  /** Envoy node cluster (default `<serviceAccount>.<namespace>`). */
  nodeCluster?: string;
  /**
   * Control plane ADS address host:port (sidecar; default 127.0.0.1:15010, serve's
   * plaintext --xds-listen). Several (an array, or one string with commas): the
   * replicas of the control plane, one endpoint each of the `xds-grpc` cluster.
   */
  xdsAddress?: string | readonly string[];
  /**
   * Reach ADS over mTLS (serve's --xds-tls-listen, default 127.0.0.1:15011): the
   * SDS `default` certificate as client certificate, the server checked against
   * ROOTCA and the control plane's SPIFFE ID. Default false: plaintext.
   */
  xdsTls?: boolean;
  /** SDS Unix socket path (default /var/run/sds/uds_path). */
  sdsSocket?: string;
  /** Service-account token file sent to SDS (default /var/run/secrets/tokens/istio-token). */
  tokenPath?: string;
  /**
   * Control plane identity: namespace and service account (default istio-system /
   * istiod). Sidecars expect it of the ADS server; the pilot role runs as it.
   */
  controlPlaneNamespace?: string;
  controlPlaneServiceAccount?: string;
  /** TLS SNI for the control plane (default istiod.<controlPlaneNamespace>.svc). */
  controlPlaneSni?: string;
  /** Admin port on 127.0.0.1 (default 15000). */
  adminPort?: number;
  /** mTLS listener of the static roles (defaults: pilot 15011, ingress 8443, mixer-like 15004) on listenAddress (0.0.0.0). */
  listenPort?: number;
  listenAddress?: string;
  /** Local upstream port on 127.0.0.1 (defaults: pilot 15010 (discovery), ingress 8080, mixer-like 9091). */
  localPort?: number;
  /** Output format (default json). */
  format?: "json" | "yaml";
  /** Template directory (default: the repository's templates/). */
  templateDir?: string;
}

export interface RenderedBootstrap {
  /** JSON: the rendered template, validated and re-indented. YAML: printed from the parsed message. */
  text: string;
  bootstrap: Bootstrap;
}

/** A bootstrap that cannot be rendered: names the option, template variable or config path at fault. */
export class BootstrapError extends Error {
  override name = "BootstrapError";
}

const DEFAULT_TEMPLATE_DIR = fileURLToPath(new URL("../../templates/", import.meta.url));

const ROLE_DEFAULTS: Record<BootstrapRole, { listenPort: number; localPort: number; namespace: string; serviceAccount: string }> = {
  sidecar: { listenPort: 0, localPort: 0, namespace: "default", serviceAccount: "default" },
  // The pilot role's identity defaults to the control plane's (controlPlaneNamespace/ServiceAccount).
  pilot: { listenPort: 15011, localPort: 15010, namespace: CONTROL_PLANE_IDENTITY.namespace, serviceAccount: CONTROL_PLANE_IDENTITY.serviceAccount },
  ingress: { listenPort: 8443, localPort: 8080, namespace: "istio-system", serviceAccount: "istio-ingressgateway-service-account" },
  "mixer-like": { listenPort: 15004, localPort: 9091, namespace: "istio-system", serviceAccount: "istio-mixer-service-account" },
};

interface CompiledTemplates {
  env: typeof Handlebars;
  roles: Map<string, HandlebarsTemplateDelegate>;
}

const compiledByDir = new Map<string, CompiledTemplates>();

/**
 * Handlebars' strict mode only checks plain `{{name}}` lookups, not helper or
 * partial arguments such as `{{json name}}`. Marking every path expression of the
 * parsed template strict makes a missing argument fail the same way, naming it.
 */
function strictAst(env: typeof Handlebars, source: string): hbs.AST.Program {
  const ast = env.parse(source);
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      node.forEach(visit);
      return;
    }
    if (typeof node !== "object" || node === null) return;
    const n = node as { type?: string; data?: boolean; parts?: string[]; strict?: boolean; loc?: unknown };
    if (n.type === "PathExpression" && !n.data && (n.parts?.length ?? 0) > 0) n.strict = true;
    for (const [k, v] of Object.entries(node)) if (k !== "loc" && k !== "path") visit(v);
  };
  visit(ast);
  return ast;
}

/** Compiles (once per directory) every `<role>.json.hbs` and `partials/*.hbs`. */
function templatesIn(dir: string): CompiledTemplates {
  const hit = compiledByDir.get(dir);
  if (hit) return hit;
  const env = Handlebars.create();
  env.registerHelper("json", (value: unknown) => {
    if (value === undefined) throw new Error("json helper: value is undefined");
    return JSON.stringify(value);
  });
  const options = { strict: true, noEscape: true, preventIndent: true } as const;
  let partials: string[] = [];
  try {
    partials = readdirSync(join(dir, "partials")).filter((f) => f.endsWith(".hbs"));
  } catch {
    /* no partials */
  }
  for (const f of partials) env.registerPartial(basename(f, ".hbs"), env.compile(strictAst(env, readFileSync(join(dir, "partials", f), "utf8")), options));
  const roles = new Map<string, HandlebarsTemplateDelegate>();
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".json.hbs"));
  } catch (err) {
    throw new BootstrapError(`cannot read template directory ${dir}: ${(err as Error).message}`);
  }
  for (const f of files) roles.set(basename(f, ".json.hbs"), env.compile(strictAst(env, readFileSync(join(dir, f), "utf8")), options));
  const compiled = { env, roles };
  compiledByDir.set(dir, compiled);
  return compiled;
}

function parseHostPort(value: string, what: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^([^:]+):(\d+)$/.exec(value);
  if (!m) throw new BootstrapError(`${what} ${JSON.stringify(value)} is not host:port`);
  return { host: m[1] as string, port: checkPort(Number(m[2]), what) };
}

/** The ADS addresses: each host:port once, in the order given. */
function parseXdsAddresses(value: string | readonly string[], what = "xdsAddress"): Array<{ host: string; port: number }> {
  const list = (typeof value === "string" ? [value] : [...value]).flatMap((v) => v.split(",")).map((v) => v.trim());
  if (list.length === 0 || list.some((v) => v === "")) throw new BootstrapError(`${what} ${JSON.stringify(value)} has an empty address`);
  const seen = new Set<string>();
  return list.map((v) => {
    const hp = parseHostPort(v, what);
    const key = `${hp.host.toLowerCase()}:${hp.port}`;
    if (seen.has(key)) throw new BootstrapError(`${what} lists ${v} twice`);
    seen.add(key);
    return hp;
  });
}

function checkPort(port: number, what: string): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new BootstrapError(`${what}: port ${port} is not in 1..65535`);
  return port;
}

function nonEmpty(value: string | undefined, fallback: string, what: string): string {
  const v = value ?? fallback;
  if (v === "") throw new BootstrapError(`option ${what} must not be empty`);
  return v;
}

/** The variables every template sees. */
export function bootstrapContext(opts: BootstrapOptions): Record<string, unknown> {
  if (!BOOTSTRAP_ROLES.includes(opts.role)) throw new BootstrapError(`unknown role ${JSON.stringify(opts.role)} (one of ${BOOTSTRAP_ROLES.join(", ")})`);
  if (!opts.nodeId) throw new BootstrapError("missing required option nodeId (--node-id)");
  const d = ROLE_DEFAULTS[opts.role];
  const cpNamespace = nonEmpty(opts.controlPlaneNamespace, CONTROL_PLANE_IDENTITY.namespace, "controlPlaneNamespace");
  const cpServiceAccount = nonEmpty(opts.controlPlaneServiceAccount, CONTROL_PLANE_IDENTITY.serviceAccount, "controlPlaneServiceAccount");
  const isPilot = opts.role === "pilot";
  const namespace = nonEmpty(opts.namespace, isPilot ? cpNamespace : d.namespace, "namespace");
  const serviceAccount = nonEmpty(opts.serviceAccount, isPilot ? cpServiceAccount : d.serviceAccount, "serviceAccount");
  const trustDomain = nonEmpty(opts.trustDomain, "cluster.local", "trustDomain");
  const xdsTls = opts.xdsTls ?? false;
  const xdsEndpoints = parseXdsAddresses(opts.xdsAddress ?? (xdsTls ? "127.0.0.1:15011" : "127.0.0.1:15010"));
  const xds = xdsEndpoints[0]!;
  const sdsSocket = nonEmpty(opts.sdsSocket, DEFAULT_SDS_SOCKET, "sdsSocket");
  return {
    role: opts.role,
    nodeId: opts.nodeId,
    nodeCluster: nonEmpty(opts.nodeCluster, `${serviceAccount}.${namespace}`, "nodeCluster"),
    namespace,
    serviceAccount,
    trustDomain,
    spiffeId: spiffeIdOf(trustDomain, { namespace, serviceAccount }),
    trustDomainPrefix: `${trustDomainId(trustDomain)}/`,
    controlPlaneSpiffeId: spiffeIdOf(trustDomain, { namespace: cpNamespace, serviceAccount: cpServiceAccount }),
    controlPlaneSni: nonEmpty(opts.controlPlaneSni, controlPlaneDnsName(cpNamespace), "controlPlaneSni"),
    xdsTls,
    // The first address, for templates written before replicas; xdsEndpoints has them all.
    xdsHost: xds.host,
    xdsPort: xds.port,
    xdsEndpoints,
    xdsClusterType: xdsEndpoints.every((e) => isIP(e.host)) ? "STATIC" : "STRICT_DNS",
    sdsSocket,
    sdsTargetUri: `unix:${sdsSocket}`,
    sdsTokenHeader: SDS_TOKEN_HEADER,
    sdsCertificateSecret: DEFAULT_SECRET_NAME,
    sdsRootSecret: ROOT_SECRET_NAME,
    tokenPath: nonEmpty(opts.tokenPath, "/var/run/secrets/tokens/istio-token", "tokenPath"),
    adminPort: checkPort(opts.adminPort ?? 15000, "adminPort"),
    listenAddress: nonEmpty(opts.listenAddress, "0.0.0.0", "listenAddress"),
    listenPort: opts.role === "sidecar" ? 0 : checkPort(opts.listenPort ?? d.listenPort, "listenPort"),
    localPort: opts.role === "sidecar" ? 0 : checkPort(opts.localPort ?? d.localPort, "localPort"),
    h2Alpn: ["h2"],
    httpAlpn: ["h2", "http/1.1"],
  };
}

/** Handlebars' strict-mode error ("x" not defined in [object Object] - 3:10) in our words. */
function templateError(template: string, err: unknown): BootstrapError {
  const msg = (err as Error).message;
  const m = /"([^"]+)" not defined in .*? - (\d+):(\d+)/s.exec(msg);
  if (m) return new BootstrapError(`template ${template}: missing variable "${m[1]}" (line ${m[2]}, column ${Number(m[3]) + 1})`);
  return new BootstrapError(`template ${template}: ${msg}`);
}

function lineOf(text: string, err: unknown): string {
  const pos = /position (\d+)/.exec((err as Error).message);
  if (!pos) return "";
  const line = text.slice(0, Number(pos[1])).split("\n").length;
  return ` at line ${line}`;
}

/**
 * Renders, parses and validates the bootstrap of `opts.role`. Throws
 * BootstrapError naming the missing option or variable, or the failing path.
 */
export function renderBootstrap(opts: BootstrapOptions): RenderedBootstrap {
  const context = bootstrapContext(opts);
  const { roles } = templatesIn(opts.templateDir ?? DEFAULT_TEMPLATE_DIR);
  const name = `${opts.role}.json.hbs`;
  const template = roles.get(opts.role);
  if (!template) throw new BootstrapError(`no template ${name} in ${opts.templateDir ?? "templates/"}`);
  let rendered: string;
  try {
    rendered = template(context);
  } catch (err) {
    throw templateError(name, err);
  }
  let json: unknown;
  try {
    json = JSON.parse(rendered);
  } catch (err) {
    throw new BootstrapError(`template ${name} rendered invalid JSON${lineOf(rendered, err)}: ${(err as Error).message}`);
  }
  let parsed;
  try {
    // The same strict parse, with repeated Any payloads parsed once; anything it cannot do goes the ordinary way.
    const message = parseBootstrapJson(json);
    parsed = parseEnvoyConfig(message ?? json, "bootstrap");
  } catch (err) {
    if (err instanceof ConfigSchemaError) throw new BootstrapError(`template ${name} rendered a bootstrap that does not parse:\n${formatIssues(err.issues, "  ")}`);
    throw err;
  }
  const issues = validateParsedConfig(parsed);
  if (issues.length > 0) throw new BootstrapError(`template ${name} rendered an invalid bootstrap:\n${formatIssues(issues, "  ")}`);
  const bootstrap = parsed.roots[0]!.message as Bootstrap;
  // JSON: the template's own (now validated) JSON, re-indented. YAML: printed from
  // the parsed message as canonical proto JSON (original field names).
  const text =
    opts.format === "yaml" ? toYaml(canonicalMessageJson(BootstrapSchema, bootstrap), { lineWidth: 0 }) : `${JSON.stringify(json, null, 2)}\n`;
  return { text, bootstrap };
}
