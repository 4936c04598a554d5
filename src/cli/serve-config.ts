// `meshkey serve` configuration: flags, an optional YAML file with the same keys
// (validated with ajv), and defaults. Flags win over the file, the file over
// defaults. Every error names the flag or the file and field. All of it comes from
// one table, `serveOptions`; so do serve's --help and the README's flag table.
import { readFileSync } from "node:fs";
import { Ajv, type ErrorObject } from "ajv";
import { parse as parseYaml } from "yaml";
import { parseDurationSeconds } from "./duration.js";
import { DEFAULT_SDS_SOCKET } from "../spiffe/index.js";
import { parseFlags, UsageError } from "./command.js";

/**
 * Default life of a `meshkey token` dev token: as long as the default certificate (24 h), so
 * twice the default rotation period (24 h × (1 - 0.5 grace)); the first renewal always has a
 * valid token. Serve warns at start when --cert-ttl and --grace-ratio rotate later than this.
 */
export const DEV_TOKEN_DEFAULT_TTL_SECONDS = 24 * 3600;

const hostPort = "^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$";
const durationPattern = "^(\\d+(\\.\\d+)?)(ms|s|m|h|d)?((\\d+(\\.\\d+)?)(ms|s|m|h|d))*$";

/**
 * How an option's value is written and checked (flag, YAML file):
 * - `string`: any text; the file's value must match `filePattern` when given, else be non-empty;
 * - `listen`: HOST:PORT, checked from the flag and the file;
 * - `duration`: "24h", "90d", "1h30m" or seconds, held as seconds;
 * - `bytes`: a whole number, at least 1; `ratio`: a number strictly between 0 and 1;
 * - `count`: a whole number, 0 or more (without a default: undefined, chosen at run time);
 * - `enum`: one of `values`;
 * - `enable`: a flag that turns something on (file: the same key, true or false);
 * - `disable`: a `--no-X` flag that leaves a part out (file: key `X`, true or false).
 */
export type ServeOptionKind = "string" | "listen" | "duration" | "bytes" | "ratio" | "count" | "enum" | "enable" | "disable";

interface OptionBase {
  /** Flag name without `--`; also the YAML key (a `disable` flag's key drops its `no-`). */
  readonly flag: string;
  /** Field of ServeConfig. */
  readonly key: string;
  /** Placeholder of the value in --help (`DIR`, `HOST:PORT`); an enum shows its values instead. */
  readonly arg?: string;
  readonly help: string;
  /** What --help and the README show as the default, when it is not the value itself. */
  readonly defaultText?: string;
}

/** One row of the serve option table. */
export type ServeOptionSpec = OptionBase &
  (
    | { readonly kind: "string"; readonly default?: string; readonly filePattern?: string }
    | { readonly kind: "listen"; readonly default: string }
    | { readonly kind: "duration"; readonly default: string }
    | { readonly kind: "bytes" | "ratio"; readonly default: number }
    | { readonly kind: "count"; readonly default?: number }
    | { readonly kind: "enum"; readonly values: readonly [string, ...string[]]; readonly default: string }
    | { readonly kind: "enable" | "disable" }
  );

/**
 * Every `meshkey serve` option, in --help order. The parseArgs options, the YAML file's schema,
 * the defaults, the ServeConfig type, the --help list and the README's table are derived from it.
 */
export const serveOptions = [
  { flag: "state-dir", key: "stateDir", kind: "string", arg: "DIR", default: ".meshkey", help: "CA root and dev token issuer (mode 0600), never a workload key" },
  { flag: "trust-domain", key: "trustDomain", kind: "string", arg: "TD", default: "cluster.local", filePattern: "^[a-z0-9._-]+$", help: "SPIFFE trust domain" },
  {
    flag: "mesh",
    key: "mesh",
    kind: "string",
    arg: "FILE",
    defaultText: "the seeds' sample (httpbin, sleep in foo and bar)",
    help: 'mesh YAML (watched). A change that is not valid, an empty file or one with no "services" key (write "services: []" for an empty mesh) is refused: the last good config serves',
  },
  { flag: "max-mesh-bytes", key: "maxMeshBytes", kind: "bytes", arg: "N", default: 16 * 1024 * 1024, help: "refuse a larger mesh file, before parsing it" },
  { flag: "guard-mass-removal", key: "guardMassRemoval", kind: "enable", help: "refuse a mesh change that removes more than half of the services (without it: a warning)" },
  {
    flag: "sds-socket",
    key: "sdsSocket",
    kind: "string",
    arg: "PATH",
    default: DEFAULT_SDS_SOCKET,
    defaultText: `${DEFAULT_SDS_SOCKET}, else <state-dir>-sds/uds_path (0755) if /var/run/sds is not writable`,
    help: "SDS Unix socket",
  },
  { flag: "xds-listen", key: "xdsListen", kind: "listen", arg: "HOST:PORT", default: "127.0.0.1:15010", help: "ADS + CSDS" },
  {
    flag: "xds-tls-listen",
    key: "xdsTlsListen",
    kind: "listen",
    arg: "HOST:PORT",
    default: "127.0.0.1:15011",
    defaultText: "127.0.0.1:15011; port 0 when --xds-listen asks for port 0",
    help: "ADS + CSDS over mTLS, as istiod's 15012: server certificate spiffe://<td>/ns/istio-system/sa/istiod from the in-process CA, client certificate required and matched to the node's identity (only when the CA runs in this process)",
  },
  { flag: "ca-listen", key: "caListen", kind: "listen", arg: "HOST:PORT", default: "127.0.0.1:15012", help: "IstioCertificateService over TLS" },
  { flag: "admin-listen", key: "adminListen", kind: "listen", arg: "HOST:PORT", default: "127.0.0.1:15014", help: "/healthz /readyz /metrics /debug/{sds,syncz,config_dump}" },
  { flag: "cert-ttl", key: "certTtlSeconds", kind: "duration", arg: "DUR", default: "24h", help: "workload certificate lifetime" },
  { flag: "max-cert-ttl", key: "maxCertTtlSeconds", kind: "duration", arg: "DUR", default: "90d", help: "longest lifetime a caller may ask for" },
  { flag: "key-type", key: "keyType", kind: "enum", values: ["ec-p256", "rsa-2048"], default: "ec-p256", help: "workload key type" },
  { flag: "grace-ratio", key: "graceRatio", kind: "ratio", arg: "R", default: 0.5, help: "rotate when this fraction of the lifetime is left (±1% jitter)" },
  {
    flag: "crypto-workers",
    key: "cryptoWorkers",
    kind: "count",
    arg: "N",
    defaultText: "the CPUs Node.js may use (os.availableParallelism())",
    help: "worker threads that make workload keys and CSRs and verify and sign CSRs for the in-process CA; 0: on the main thread",
  },
  { flag: "jwks", key: "jwks", kind: "string", arg: "FILE|URL", defaultText: "the dev issuer's, in --state-dir", help: "JWKS that verifies service-account tokens" },
  { flag: "jwt-issuer", key: "jwtIssuer", kind: "string", arg: "ISS", help: "required iss (OIDC discovery when --jwks is not given)" },
  { flag: "jwt-audience", key: "jwtAudience", kind: "string", arg: "AUD", default: "istio-ca", help: "required aud" },
  { flag: "token-review", key: "tokenReview", kind: "string", arg: "URL", help: "verify tokens with the Kubernetes TokenReview API instead" },
  { flag: "ca-provider", key: "caProvider", kind: "enum", values: ["builtin", "istio", "vault"], default: "builtin", help: "where the SDS agent gets certificates" },
  { flag: "ca-address", key: "caAddress", kind: "string", arg: "HOST:PORT", filePattern: hostPort, help: "remote IstioCertificateService (with --ca-provider istio)" },
  { flag: "ca-root-cert", key: "caRootCert", kind: "string", arg: "FILE", help: "root PEM that the remote CA's TLS certificate chains to" },
  { flag: "vault-address", key: "vaultAddress", kind: "string", arg: "URL", filePattern: "^https?://", help: "Vault server (with --ca-provider vault)" },
  { flag: "vault-auth-path", key: "vaultAuthPath", kind: "string", arg: "P", default: "auth/kubernetes/login", help: "Vault Kubernetes-auth login path" },
  { flag: "vault-role", key: "vaultRole", kind: "string", arg: "R", default: "istio-cert", help: "Vault role to log in as" },
  { flag: "vault-sign-path", key: "vaultSignPath", kind: "string", arg: "P", default: "pki/sign/istio-pki-role", help: "Vault PKI path that signs the CSRs" },
  { flag: "vault-ca-cert", key: "vaultCaCert", kind: "string", arg: "FILE", help: "CA PEM that Vault's TLS certificate chains to" },
  { flag: "plugin-certs", key: "pluginCerts", kind: "string", arg: "DIR", help: "Istio cacerts (ca-cert.pem ca-key.pem root-cert.pem cert-chain.pem)" },
  {
    flag: "token-path",
    key: "tokenPath",
    kind: "string",
    arg: "PATH",
    default: "/var/run/secrets/tokens/istio-token",
    help: "token file Envoy sends over SDS, written into pushed config",
  },
  { flag: "no-sds", key: "sds", kind: "disable", help: "leave the SDS node agent out (split deployments)" },
  { flag: "no-xds", key: "xds", kind: "disable", help: "leave the ADS control plane out (split deployments)" },
  { flag: "no-ca", key: "ca", kind: "disable", help: "leave the CA out (split deployments)" },
  {
    flag: "log-level",
    key: "logLevel",
    kind: "enum",
    values: ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
    default: "info",
    help: "logs go to stderr",
  },
  {
    flag: "log-format",
    key: "logFormat",
    kind: "enum",
    values: ["json", "text"],
    default: "json",
    help: "json: one JSON object a line; text: ISO time, LEVEL, message, key=value",
  },
] as const satisfies readonly ServeOptionSpec[];

type ServeOption = (typeof serveOptions)[number];
type ValueOf<O extends ServeOption> = O extends { kind: "enum"; values: readonly (infer V)[] }
  ? V
  : O extends { kind: "duration" | "bytes" | "ratio" }
    ? number
    : O extends { kind: "count"; default: number }
      ? number
      : O extends { kind: "count" }
        ? number | undefined
    : O extends { kind: "enable" | "disable" }
      ? boolean
      : O extends { default: string }
        ? string
        : string | undefined;
/** The values of the option table, by config key. */
type ServeOptionValues = { -readonly [O in ServeOption as O["key"]]: ValueOf<O> };

export interface ServeConfig extends ServeOptionValues {
  /** Whether sdsSocket was chosen by the user (no fallback then). */
  sdsSocketExplicit: boolean;
}
export type KeyType = ServeConfig["keyType"];
export type CaProviderKind = ServeConfig["caProvider"];
export type LogLevel = ServeConfig["logLevel"];
export type LogFormat = ServeConfig["logFormat"];

/** The YAML key of an option: its flag's name, but X for a `--no-X` flag. */
export function fileKeyOf(option: ServeOptionSpec): string {
  return option.kind === "disable" ? option.flag.replace(/^no-/, "") : option.flag;
}

function defaultOf(option: ServeOptionSpec): unknown {
  switch (option.kind) {
    case "duration":
      return parseDurationSeconds(option.default);
    case "enable":
      return false;
    case "disable":
      return true;
    default:
      return option.default;
  }
}

const defaults = Object.fromEntries(serveOptions.map((o) => [o.key, defaultOf(o)])) as ServeOptionValues;

function fileSchemaOf(option: ServeOptionSpec): object {
  switch (option.kind) {
    case "string":
      return option.filePattern === undefined ? { type: "string", minLength: 1 } : { type: "string", pattern: option.filePattern };
    case "listen":
      return { type: "string", pattern: hostPort };
    case "duration":
      return { anyOf: [{ type: "string", pattern: durationPattern }, { type: "number", exclusiveMinimum: 0 }] };
    case "bytes":
      return { anyOf: [{ type: "integer", minimum: 1 }, { type: "string", pattern: "^[0-9]+$" }] };
    case "count":
      return { anyOf: [{ type: "integer", minimum: 0 }, { type: "string", pattern: "^[0-9]+$" }] };
    case "ratio":
      return { type: "number", exclusiveMinimum: 0, exclusiveMaximum: 1 };
    case "enum":
      return { enum: option.values };
    case "enable":
    case "disable":
      return { type: "boolean" };
  }
}

/** The table with the `--no-X` switches last, then the `enable` ones (the order of the flag and key lists). */
const valueOptionsFirst: readonly ServeOptionSpec[] = [
  ...serveOptions.filter((o) => o.kind !== "disable" && o.kind !== "enable"),
  ...serveOptions.filter((o) => o.kind === "disable"),
  ...serveOptions.filter((o) => o.kind === "enable"),
];

/** JSON schema of the YAML config file (kebab-case keys, like the flags). */
export const serveConfigFileSchema = {
  type: "object",
  additionalProperties: false,
  properties: Object.fromEntries(
    [...serveOptions.filter((o) => o.kind !== "disable"), ...serveOptions.filter((o) => o.kind === "disable")].map((o) => [fileKeyOf(o), fileSchemaOf(o)]),
  ),
};

const ajv = new Ajv({ allErrors: true, strict: true });
const validateFile = ajv.compile(serveConfigFileSchema);

function describeAjvError(e: ErrorObject): string {
  const path = e.instancePath ? e.instancePath.slice(1).replace(/\//g, ".") : "(top level)";
  if (e.keyword === "additionalProperties") return `${path}: unknown key "${String(e.params.additionalProperty)}"`;
  if (e.keyword === "enum") return `${path}: must be one of ${(e.params.allowedValues as unknown[]).join(", ")}`;
  return `${path}: ${e.message ?? "invalid"}`;
}

/** A --config file that cannot be read or is not valid: a usage error (exit 2), naming the file and field. */
export class ConfigError extends UsageError {
  override name = "ConfigError";
}

/** Reads and validates a YAML config file into flag-style raw values. */
export function readConfigFile(file: string): Record<string, string | number | boolean> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (err) {
    throw new ConfigError(`${file}: not valid YAML: ${(err as Error).message}`);
  }
  if (!validateFile(doc)) {
    throw new ConfigError(`${file}: ${(validateFile.errors ?? []).map(describeAjvError).join("; ")}`);
  }
  return doc as Record<string, string | number | boolean>;
}

/** parseArgs options of `meshkey serve`: --config, then one per row of the option table. */
export const serveFlagOptions: Record<string, { type: "string" | "boolean" }> = {
  config: { type: "string" },
  ...Object.fromEntries(valueOptionsFirst.map((o) => [o.flag, { type: o.kind === "enable" || o.kind === "disable" ? "boolean" : "string" }])),
};

/** An option's value from the text of its flag or file key, named by `where` in errors. */
function parseOptionValue(option: ServeOptionSpec, text: string, where: string): unknown {
  switch (option.kind) {
    case "duration":
      try {
        return parseDurationSeconds(text, where);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
    case "bytes": {
      const n = Number(text);
      if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n) || n < 1) {
        throw new UsageError(`${where}: must be a whole number of bytes (at least 1), got "${text}"`);
      }
      return n;
    }
    case "count": {
      const n = Number(text);
      if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n)) throw new UsageError(`${where}: must be a whole number (0 or more), got "${text}"`);
      return n;
    }
    case "ratio": {
      const n = Number(text);
      if (!(n > 0 && n < 1)) throw new UsageError(`${where}: must be a number between 0 and 1, got "${text}"`);
      return n;
    }
    default:
      return text;
  }
}

/** Parses `meshkey serve` arguments into a full config (flags > file > defaults). */
export function resolveServeConfig(argv: string[]): ServeConfig {
  const { values } = parseFlags(argv, serveFlagOptions as Parameters<typeof parseFlags>[1]);
  const flags = values as Record<string, string | boolean | undefined>;
  let file: Record<string, string | number | boolean> = {};
  if (typeof flags.config === "string") {
    try {
      file = readConfigFile(flags.config);
    } catch (err) {
      throw err instanceof ConfigError ? new ConfigError(`--config ${err.message}`) : err;
    }
  }
  const where = (key: string) => (key in flags && flags[key] !== undefined ? `--${key}` : `${flags.config}: ${key}`);

  const cfg: ServeConfig = { ...defaults, sdsSocketExplicit: false };
  const raw = cfg as unknown as Record<string, unknown>;
  for (const option of valueOptionsFirst) {
    const { flag, key } = option;
    if (option.kind === "disable" || option.kind === "enable") {
      const fileKey = fileKeyOf(option);
      if (flags[flag] === true) raw[key] = option.kind === "enable";
      else if (typeof file[fileKey] === "boolean") raw[key] = file[fileKey];
      continue;
    }
    const value = flags[flag] ?? file[flag];
    if (value !== undefined) raw[key] = parseOptionValue(option, String(value), where(flag));
  }
  cfg.sdsSocketExplicit = flags["sds-socket"] !== undefined || file["sds-socket"] !== undefined;
  // A process that asks the kernel for its ADS port (tests, the demo) gets a kernel-chosen
  // mTLS ADS port too, unless it names one: many such processes share one host.
  if (flags["xds-tls-listen"] === undefined && file["xds-tls-listen"] === undefined) {
    const plain = /^(.*):0$/.exec(cfg.xdsListen);
    if (plain) cfg.xdsTlsListen = `${plain[1]}:0`;
  }

  for (const option of serveOptions) {
    if (option.kind !== "enum") continue;
    const value = String(raw[option.key]);
    if (!(option.values as readonly string[]).includes(value)) {
      throw new UsageError(`${where(option.flag)}: must be one of ${option.values.join(", ")}, got "${value}"`);
    }
  }
  for (const option of serveOptions) {
    if (option.kind === "listen") parseHostPort(cfg[option.key], where(option.flag));
  }
  if (cfg.certTtlSeconds <= 0) throw new UsageError(`${where("cert-ttl")}: must be positive`);
  if (cfg.certTtlSeconds > cfg.maxCertTtlSeconds) {
    throw new UsageError(`--cert-ttl (${cfg.certTtlSeconds}s) is above --max-cert-ttl (${cfg.maxCertTtlSeconds}s)`);
  }
  if (!cfg.sds && !cfg.xds && !cfg.ca) throw new UsageError("--no-sds, --no-xds and --no-ca together leave nothing to run");
  if (cfg.sds && cfg.caProvider === "istio" && !cfg.caAddress) {
    throw new UsageError("--ca-provider istio needs --ca-address HOST:PORT (and --ca-root-cert FILE)");
  }
  if (cfg.sds && cfg.caProvider === "vault" && !cfg.vaultAddress) {
    throw new UsageError("--ca-provider vault needs --vault-address URL");
  }
  if (cfg.sds && cfg.caProvider === "builtin" && !cfg.ca) {
    throw new UsageError("--no-ca with the builtin CA provider leaves the SDS agent no CA: add --ca-provider istio --ca-address …");
  }
  return cfg;
}

export function parseHostPort(text: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new UsageError(`${what}: "${text}" is not HOST:PORT`);
  return { host: m[1] ?? m[2]!, port };
}
