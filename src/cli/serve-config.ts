// `meshkey serve` configuration: flags, an optional YAML file with the same keys
// (validated with ajv), and defaults. Flags win over the file, the file over
// defaults. Every error names the flag or the file and field.
import { readFileSync } from "node:fs";
import { Ajv, type ErrorObject } from "ajv";
import { parse as parseYaml } from "yaml";
import { parseDurationSeconds } from "./duration.js";
import { parseFlags, UsageError } from "./command.js";

export type KeyType = "ec-p256" | "rsa-2048";
export type CaProviderKind = "builtin" | "istio" | "vault";
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
export type LogFormat = "json" | "text";

export interface ServeConfig {
  stateDir: string;
  trustDomain: string;
  /** Mesh YAML file; undefined = the built-in sample mesh. */
  mesh: string | undefined;
  /** A mesh file larger than this is refused before it is parsed. */
  maxMeshBytes: number;
  /** Refuse a mesh change that removes more than half of the services (else: a warning). */
  guardMassRemoval: boolean;
  sdsSocket: string;
  /** Whether sdsSocket was chosen by the user (no fallback then). */
  sdsSocketExplicit: boolean;
  xdsListen: string;
  /** mTLS ADS (server certificate from the in-process CA, client certificate required); only with the CA in process. */
  xdsTlsListen: string;
  caListen: string;
  adminListen: string;
  certTtlSeconds: number;
  maxCertTtlSeconds: number;
  keyType: KeyType;
  graceRatio: number;
  jwks: string | undefined;
  jwtIssuer: string | undefined;
  jwtAudience: string;
  tokenReview: string | undefined;
  caProvider: CaProviderKind;
  caAddress: string | undefined;
  caRootCert: string | undefined;
  vaultAddress: string | undefined;
  vaultAuthPath: string;
  vaultRole: string;
  vaultSignPath: string;
  vaultCaCert: string | undefined;
  pluginCerts: string | undefined;
  /** Token file path that Envoy's file_based_metadata reads (goes into generated config). */
  tokenPath: string;
  sds: boolean;
  xds: boolean;
  ca: boolean;
  logLevel: LogLevel;
  logFormat: LogFormat;
}

export const DEFAULT_SDS_SOCKET = "/var/run/sds/uds_path";
/**
 * Default life of a `meshkey token` dev token: as long as the default certificate (24 h), so
 * twice the default rotation period (24 h × (1 - 0.5 grace)); the first renewal always has a
 * valid token. Serve warns at start when --cert-ttl and --grace-ratio rotate later than this.
 */
export const DEV_TOKEN_DEFAULT_TTL_SECONDS = 24 * 3600;

const defaults: ServeConfig = {
  stateDir: ".meshkey",
  trustDomain: "cluster.local",
  mesh: undefined,
  maxMeshBytes: 16 * 1024 * 1024,
  guardMassRemoval: false,
  sdsSocket: DEFAULT_SDS_SOCKET,
  sdsSocketExplicit: false,
  xdsListen: "127.0.0.1:15010",
  xdsTlsListen: "127.0.0.1:15011",
  caListen: "127.0.0.1:15012",
  adminListen: "127.0.0.1:15014",
  certTtlSeconds: 24 * 3600,
  maxCertTtlSeconds: 90 * 86400,
  keyType: "ec-p256",
  graceRatio: 0.5,
  jwks: undefined,
  jwtIssuer: undefined,
  jwtAudience: "istio-ca",
  tokenReview: undefined,
  caProvider: "builtin",
  caAddress: undefined,
  caRootCert: undefined,
  vaultAddress: undefined,
  vaultAuthPath: "auth/kubernetes/login",
  vaultRole: "istio-cert",
  vaultSignPath: "pki/sign/istio-pki-role",
  vaultCaCert: undefined,
  pluginCerts: undefined,
  tokenPath: "/var/run/secrets/tokens/istio-token",
  sds: true,
  xds: true,
  ca: true,
  logLevel: "info",
  logFormat: "json",
};

// Flag name → config key. The YAML file uses the same kebab-case names as the flags.
const stringKeys = {
  "state-dir": "stateDir",
  "trust-domain": "trustDomain",
  mesh: "mesh",
  "max-mesh-bytes": "maxMeshBytes",
  "sds-socket": "sdsSocket",
  "xds-listen": "xdsListen",
  "xds-tls-listen": "xdsTlsListen",
  "ca-listen": "caListen",
  "admin-listen": "adminListen",
  "cert-ttl": "certTtlSeconds",
  "max-cert-ttl": "maxCertTtlSeconds",
  "key-type": "keyType",
  "grace-ratio": "graceRatio",
  jwks: "jwks",
  "jwt-issuer": "jwtIssuer",
  "jwt-audience": "jwtAudience",
  "token-review": "tokenReview",
  "ca-provider": "caProvider",
  "ca-address": "caAddress",
  "ca-root-cert": "caRootCert",
  "vault-address": "vaultAddress",
  "vault-auth-path": "vaultAuthPath",
  "vault-role": "vaultRole",
  "vault-sign-path": "vaultSignPath",
  "vault-ca-cert": "vaultCaCert",
  "plugin-certs": "pluginCerts",
  "token-path": "tokenPath",
  "log-level": "logLevel",
  "log-format": "logFormat",
} as const;
const booleanKeys = { "no-sds": "sds", "no-xds": "xds", "no-ca": "ca" } as const;
/** Flags that turn something on (the YAML file takes the same kebab-case key, true or false). */
const enableKeys = { "guard-mass-removal": "guardMassRemoval" } as const;

const hostPort = "^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$";
const durationPattern = "^(\\d+(\\.\\d+)?)(ms|s|m|h|d)?((\\d+(\\.\\d+)?)(ms|s|m|h|d))*$";

/** JSON schema of the YAML config file (kebab-case keys, like the flags). */
export const serveConfigFileSchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    "state-dir": { type: "string", minLength: 1 },
    "trust-domain": { type: "string", pattern: "^[a-z0-9._-]+$" },
    mesh: { type: "string", minLength: 1 },
    "max-mesh-bytes": { anyOf: [{ type: "integer", minimum: 1 }, { type: "string", pattern: "^[0-9]+$" }] },
    "guard-mass-removal": { type: "boolean" },
    "sds-socket": { type: "string", minLength: 1 },
    "xds-listen": { type: "string", pattern: hostPort },
    "xds-tls-listen": { type: "string", pattern: hostPort },
    "ca-listen": { type: "string", pattern: hostPort },
    "admin-listen": { type: "string", pattern: hostPort },
    "cert-ttl": { anyOf: [{ type: "string", pattern: durationPattern }, { type: "number", exclusiveMinimum: 0 }] },
    "max-cert-ttl": { anyOf: [{ type: "string", pattern: durationPattern }, { type: "number", exclusiveMinimum: 0 }] },
    "key-type": { enum: ["ec-p256", "rsa-2048"] },
    "grace-ratio": { type: "number", exclusiveMinimum: 0, exclusiveMaximum: 1 },
    jwks: { type: "string", minLength: 1 },
    "jwt-issuer": { type: "string", minLength: 1 },
    "jwt-audience": { type: "string", minLength: 1 },
    "token-review": { type: "string", minLength: 1 },
    "ca-provider": { enum: ["builtin", "istio", "vault"] },
    "ca-address": { type: "string", pattern: hostPort },
    "ca-root-cert": { type: "string", minLength: 1 },
    "vault-address": { type: "string", pattern: "^https?://" },
    "vault-auth-path": { type: "string", minLength: 1 },
    "vault-role": { type: "string", minLength: 1 },
    "vault-sign-path": { type: "string", minLength: 1 },
    "vault-ca-cert": { type: "string", minLength: 1 },
    "plugin-certs": { type: "string", minLength: 1 },
    "token-path": { type: "string", minLength: 1 },
    "log-level": { enum: ["fatal", "error", "warn", "info", "debug", "trace", "silent"] },
    "log-format": { enum: ["json", "text"] },
    sds: { type: "boolean" },
    xds: { type: "boolean" },
    ca: { type: "boolean" },
  },
} as const;

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

export const serveFlagOptions = {
  config: { type: "string" },
  ...Object.fromEntries(Object.keys(stringKeys).map((k) => [k, { type: "string" }])),
  ...Object.fromEntries(Object.keys(booleanKeys).map((k) => [k, { type: "boolean" }])),
  ...Object.fromEntries(Object.keys(enableKeys).map((k) => [k, { type: "boolean" }])),
} as const;

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

  const cfg: ServeConfig = { ...defaults };
  const raw = cfg as unknown as Record<string, unknown>;
  for (const [flag, key] of Object.entries(stringKeys)) {
    const value = flags[flag] ?? file[flag];
    if (value === undefined) continue;
    const text = String(value);
    switch (key) {
      case "certTtlSeconds":
      case "maxCertTtlSeconds":
        try {
          raw[key] = parseDurationSeconds(text, where(flag));
        } catch (err) {
          throw new UsageError((err as Error).message);
        }
        break;
      case "maxMeshBytes": {
        const n = Number(text);
        if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n) || n < 1) {
          throw new UsageError(`${where(flag)}: must be a whole number of bytes (at least 1), got "${text}"`);
        }
        raw[key] = n;
        break;
      }
      case "graceRatio": {
        const n = Number(text);
        if (!(n > 0 && n < 1)) throw new UsageError(`${where(flag)}: must be a number between 0 and 1, got "${text}"`);
        raw[key] = n;
        break;
      }
      default:
        raw[key] = text;
    }
  }
  for (const [flag, key] of Object.entries(booleanKeys)) {
    if (flags[flag] === true) raw[key] = false;
    else if (typeof file[key] === "boolean") raw[key] = file[key];
  }
  for (const [flag, key] of Object.entries(enableKeys)) {
    if (flags[flag] === true) raw[key] = true;
    else if (typeof file[flag] === "boolean") raw[key] = file[flag];
  }
  cfg.sdsSocketExplicit = flags["sds-socket"] !== undefined || file["sds-socket"] !== undefined;
  // A process that asks the kernel for its ADS port (tests, the demo) gets a kernel-chosen
  // mTLS ADS port too, unless it names one: many such processes share one host.
  if (flags["xds-tls-listen"] === undefined && file["xds-tls-listen"] === undefined) {
    const plain = /^(.*):0$/.exec(cfg.xdsListen);
    if (plain) cfg.xdsTlsListen = `${plain[1]}:0`;
  }

  const oneOf = <T extends string>(flag: string, value: string, allowed: readonly T[]): T => {
    if (!(allowed as readonly string[]).includes(value)) {
      throw new UsageError(`${where(flag)}: must be one of ${allowed.join(", ")}, got "${value}"`);
    }
    return value as T;
  };
  cfg.keyType = oneOf("key-type", cfg.keyType, ["ec-p256", "rsa-2048"]);
  cfg.caProvider = oneOf("ca-provider", cfg.caProvider, ["builtin", "istio", "vault"]);
  cfg.logLevel = oneOf("log-level", cfg.logLevel, ["fatal", "error", "warn", "info", "debug", "trace", "silent"]);
  cfg.logFormat = oneOf("log-format", cfg.logFormat, ["json", "text"]);
  for (const flag of ["xds-listen", "xds-tls-listen", "ca-listen", "admin-listen"] as const) {
    parseHostPort(cfg[stringKeys[flag]], where(flag));
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
