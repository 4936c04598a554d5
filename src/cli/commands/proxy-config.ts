// `meshkey proxy-config cluster|listener|route|endpoint|secret NODE`: one proxy's
// resources as tables (as `istioctl proxy-config`), from what meshkey sent it (CSDS)
// or, with --envoy URL, from what a live Envoy holds (/config_dump?include_eds, /certs).
import { X509Certificate } from "node:crypto";
import { toJson } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { fingerprintSha256 } from "../../ca/index.js";
import { envoyTypeRegistry } from "../../envoy/index.js";
import { parseFlags, runCommand, UsageError, type CliCommand } from "../command.js";
import { addressFlag, DEFAULT_ADMIN, DEFAULT_XDS, envoyAdminJson, envoyUrlFlag, meshkeyEndpoints, UnreachableError, DEBUG_SDS_LIMIT } from "../meshkey-endpoints.js";
import { nodeSpiffeId, type SdsDebugJson } from "../proxy-sync.js";
import { formatTable, terminalSafe } from "../terminal-text.js";
import { splitPem, uriSans } from "../x509-text.js";
import { TypeUrl } from "../../xds/index.js";

const KINDS = ["cluster", "listener", "route", "endpoint", "secret"] as const;
type Kind = (typeof KINDS)[number];
const ALIASES: Record<string, Kind> = { clusters: "cluster", c: "cluster", listeners: "listener", l: "listener", routes: "route", r: "route", endpoints: "endpoint", ep: "endpoint", secrets: "secret", s: "secret" };

const help = `meshkey proxy-config — one proxy's clusters, listeners, routes, endpoints or secrets

Usage: meshkey proxy-config cluster|listener|route|endpoint|secret NODE [--xds ADDR] [--admin ADDR] [-o table|json]
       meshkey proxy-config cluster|listener|route|endpoint|secret --envoy URL [-o table|json]

Without --envoy: what meshkey sent the node (its CSDS answer; secrets from /debug/sds
and /debug/trust_bundle). With --envoy URL: what that Envoy holds, from its admin's
/config_dump?include_eds and /certs (NODE is then not needed).
Tables: clusters by service FQDN, port, subset, direction, discovery type and the
SAN the TLS context requires; listeners by address, port, filter-chain match and
destination; routes by route config, virtual host, domains, match and cluster;
endpoints by address, health, locality, weight and cluster; secrets by name, type,
SAN, serial, not-before and not-after, and the root's SHA256 fingerprint as
\`openssl x509 -fingerprint -sha256\` prints it. A private key is never printed.
-o json prints the resources in Envoy's own JSON (proto field names, "@type").

Options:
  --xds HOST:PORT     meshkey's ADS/CSDS address (default ${DEFAULT_XDS}, serve's --xds-listen)
  --admin HOST:PORT   meshkey's admin address (default ${DEFAULT_ADMIN}, serve's --admin-listen)
  --envoy URL         a live Envoy's admin, e.g. http://127.0.0.1:15000
  -o, --output FMT    table (default) or json

Examples:
  meshkey proxy-config cluster 'sidecar~127.0.1.2~sleep-1.foo~foo.svc.cluster.local'
  meshkey proxy-config secret --envoy http://127.0.0.1:15000`;

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === "object" && !Array.isArray(v) ? (v as Json) : {});
const arr = (v: unknown): Json[] => (Array.isArray(v) ? (v as Json[]) : []);
const str = (v: unknown): string => (typeof v === "string" || typeof v === "number" ? String(v) : "");

/** The resources of one kind, as Envoy's JSON (snake_case, "@type" on Any). */
interface ResourceSource {
  resources(kind: Exclude<Kind, "secret">): Promise<Json[]>;
  secrets(): Promise<SecretRow[]>;
  secretsJson(): Promise<unknown>;
}

interface SecretRow {
  name: string;
  type: string;
  status: string;
  san: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  fingerprint?: string;
}

const TYPE_OF: Record<Exclude<Kind, "secret">, string> = { cluster: TypeUrl.Cluster, listener: TypeUrl.Listener, route: TypeUrl.Route, endpoint: TypeUrl.Endpoint };

function meshkeySource(addresses: { xds: string; admin: string }, nodeId: string): ResourceSource {
  const endpoints = meshkeyEndpoints(addresses);
  let status: ReturnType<typeof endpoints.clientStatus> | undefined;
  const config = async () => {
    status ??= endpoints.clientStatus(nodeId);
    const c = (await status).config.find((x) => x.node?.id === nodeId);
    if (!c) throw new UnreachableError(`no proxy "${terminalSafe(nodeId)}" is connected to meshkey at ${addresses.xds} (see meshkey proxy-status)`);
    return c;
  };
  const secrets = async (): Promise<SecretRow[]> => {
    const c = await config();
    const sds = await endpoints.adminJson<SdsDebugJson>(`/debug/sds?limit=${DEBUG_SDS_LIMIT}`, { allow404: true });
    if (!sds) throw new UnreachableError(`meshkey at ${addresses.admin} runs no SDS agent (--no-sds): no secrets to show`);
    const spiffeId = nodeSpiffeId(c, sds.trustDomain);
    const ident = sds.identities.find((i) => i.spiffeId === spiffeId);
    const bundle = await endpoints.adminJson<{ rootCertPem: string }>("/debug/trust_bundle", { allow404: true });
    const rows: SecretRow[] = [
      {
        name: "default",
        type: "Cert Chain",
        status: ident?.notAfter ? (ident.streams > 0 ? "ACTIVE" : "CACHED") : spiffeId ? "NOT ISSUED" : "NO IDENTITY",
        san: spiffeId ?? "",
        serial: normalSerial(ident?.serialHex ?? ""),
        notBefore: ident?.notBefore ?? "",
        notAfter: ident?.notAfter ?? "",
      },
    ];
    const root = bundle ? splitPem(bundle.rootCertPem).map((p) => new X509Certificate(p))[0] : undefined;
    rows.push(root ? caRow(root) : { name: "ROOTCA", type: "CA", status: "UNKNOWN", san: "", serial: "", notBefore: "", notAfter: "" });
    return rows;
  };
  return {
    async resources(kind) {
      const c = await config();
      return c.genericXdsConfigs.filter((g) => g.typeUrl === TYPE_OF[kind] && g.xdsConfig).map((g) => toJson(AnySchema, g.xdsConfig!, { registry: envoyTypeRegistry, useProtoFieldName: true }) as Json);
    },
    secrets,
    secretsJson: secrets,
  };
}

function caRow(root: X509Certificate, status = "ACTIVE"): SecretRow {
  return {
    name: "ROOTCA",
    type: "CA",
    status,
    san: uriSans(root).join(",") || root.subject.replace(/\n/g, ","),
    serial: normalSerial(root.serialNumber),
    notBefore: new Date(root.validFrom).toISOString(),
    notAfter: new Date(root.validTo).toISOString(),
    fingerprint: fingerprintSha256(root.raw),
  };
}

/** Lower-case hex without leading zero bytes (as Envoy's /certs prints serials). */
function normalSerial(hex: string): string {
  return hex.toLowerCase().replace(/^(00)+(?=..)/, "");
}

function envoySource(url: string): ResourceSource {
  let dump: Promise<{ configs?: Json[] }> | undefined;
  const configOf = async (suffix: string) => {
    dump ??= envoyAdminJson<{ configs?: Json[] }>(url, "/config_dump?include_eds");
    return obj((await dump).configs?.find((c) => str(c["@type"]).endsWith(suffix)));
  };
  const secretEntries = async () => {
    const s = await configOf("SecretsConfigDump");
    return [...arr(s.static_secrets), ...arr(s.dynamic_active_secrets), ...arr(s.dynamic_warming_secrets)];
  };
  return {
    async resources(kind) {
      switch (kind) {
        case "cluster": {
          const c = await configOf("ClustersConfigDump");
          return [...arr(c.static_clusters), ...arr(c.dynamic_active_clusters), ...arr(c.dynamic_warming_clusters)].map((x) => obj(x.cluster));
        }
        case "listener": {
          const l = await configOf("ListenersConfigDump");
          return [...arr(l.static_listeners).map((x) => obj(x.listener)), ...arr(l.dynamic_listeners).map((x) => obj(obj(x.active_state).listener ?? obj(x.warming_state).listener))].filter((x) => Object.keys(x).length > 0);
        }
        case "route": {
          const r = await configOf("RoutesConfigDump");
          return [...arr(r.static_route_configs), ...arr(r.dynamic_route_configs)].map((x) => obj(x.route_config));
        }
        case "endpoint": {
          const e = await configOf("EndpointsConfigDump");
          return [...arr(e.static_endpoint_configs), ...arr(e.dynamic_endpoint_configs)].map((x) => obj(x.endpoint_config));
        }
      }
    },
    async secrets() {
      const certs = await envoyAdminJson<{ certificates?: Json[] }>(url, "/certs");
      const rows: SecretRow[] = [];
      for (const entry of await secretEntries()) {
        const secret = obj(entry.secret);
        const name = str(entry.name) || str(secret.name);
        const tls = obj(secret.tls_certificate);
        const vc = obj(secret.validation_context);
        if (Object.keys(tls).length > 0) {
          const pem = Buffer.from(str(obj(tls.certificate_chain).inline_bytes), "base64").toString("utf8");
          const leaf = splitPem(pem).map((p) => new X509Certificate(p))[0];
          // Without the PEM in the dump (an older Envoy), /certs still names the certificate.
          const detail = leaf ? undefined : arr(certs.certificates).flatMap((c) => arr(c.cert_chain))[0];
          rows.push({
            name,
            type: "Cert Chain",
            status: "ACTIVE",
            san: leaf ? uriSans(leaf).join(",") : arr(detail?.subject_alt_names).map((s) => str(s.uri) || str(s.dns)).join(","),
            serial: leaf ? normalSerial(leaf.serialNumber) : normalSerial(str(detail?.serial_number)),
            notBefore: leaf ? new Date(leaf.validFrom).toISOString() : str(detail?.valid_from),
            notAfter: leaf ? new Date(leaf.validTo).toISOString() : str(detail?.expiration_time),
          });
        } else if (Object.keys(vc).length > 0) {
          const pem = Buffer.from(str(obj(vc.trusted_ca).inline_bytes), "base64").toString("utf8");
          for (const root of splitPem(pem).map((p) => new X509Certificate(p))) rows.push({ ...caRow(root), name });
        }
      }
      return rows;
    },
    async secretsJson() {
      // Envoy redacts private keys in its dump; drop them here whatever it printed.
      return (await secretEntries()).map((e) => {
        const secret = obj(e.secret);
        const tls = obj(secret.tls_certificate);
        if (Object.keys(tls).length === 0) return e;
        const { private_key: _key, ...rest } = tls;
        return { ...e, secret: { ...secret, tls_certificate: rest } };
      });
    },
  };
}

// ---- tables ----

function tlsSans(transportSocket: unknown): string {
  const ctx = obj(obj(transportSocket).typed_config);
  const common = obj(ctx.common_tls_context);
  const vc = obj(obj(common.combined_validation_context).default_validation_context ?? common.validation_context);
  const sans = arr(vc.match_typed_subject_alt_names).map((m) => str(obj(m.matcher).exact) || str(obj(m.matcher).prefix));
  if (Object.keys(ctx).length === 0) return "-";
  return sans.length > 0 ? sans.join(",") : "TLS";
}

function clusterRows(clusters: Json[]): string[][] {
  return clusters.map((c) => {
    const name = str(c.name);
    const parts = name.split("|");
    const [direction, port, subset, fqdn] = parts.length === 4 ? parts : ["-", "-", "", name];
    return [fqdn || "-", port || "-", subset || "-", direction || "-", str(c.type) || (c.cluster_type ? "CUSTOM" : "STATIC"), tlsSans(c.transport_socket)];
  });
}

function chainMatch(m: Json): string {
  const parts: string[] = [];
  if (m.destination_port !== undefined) parts.push(`port ${str(m.destination_port)}`);
  if (m.transport_protocol) parts.push(str(m.transport_protocol));
  const alpn = arr(m.application_protocols as unknown).map(String);
  if (alpn.length) parts.push(`ALPN ${alpn.join(",")}`);
  const sni = arr(m.server_names as unknown).map(String);
  if (sni.length) parts.push(`SNI ${sni.join(",")}`);
  return parts.length ? parts.join("; ") : "ALL";
}

function chainDestination(chain: Json): string {
  for (const f of arr(chain.filters)) {
    const tc = obj(f.typed_config);
    const type = str(tc["@type"]);
    if (type.endsWith("HttpConnectionManager")) {
      const rds = obj(tc.rds);
      return rds.route_config_name ? `Route: ${str(rds.route_config_name)}` : `Inline Route: ${str(obj(tc.route_config).name)}`;
    }
    if (type.endsWith("TcpProxy")) return `Cluster: ${str(tc.cluster)}`;
  }
  return "-";
}

function listenerRows(listeners: Json[]): string[][] {
  return listeners.flatMap((l) => {
    const sa = obj(obj(l.address).socket_address);
    const address = l.api_listener ? "(API listener)" : str(sa.address);
    const port = l.api_listener ? "-" : str(sa.port_value) || "0";
    const api = obj(obj(l.api_listener).api_listener);
    if (l.api_listener) return [[str(l.name), address, port, "ALL", obj(api.rds).route_config_name ? `Route: ${str(obj(api.rds).route_config_name)}` : "Inline Route"]];
    const chains = [...arr(l.filter_chains), ...(l.default_filter_chain ? [obj(l.default_filter_chain)] : [])];
    return chains.map((ch) => [str(l.name), address, port, ch === l.default_filter_chain ? "(default)" : chainMatch(obj(ch.filter_chain_match)), chainDestination(ch)]);
  });
}

function routeRows(routes: Json[]): string[][] {
  return routes.flatMap((rc) =>
    arr(rc.virtual_hosts).flatMap((vh) => {
      const domains = arr(vh.domains as unknown).map(String);
      const shown = domains.length > 3 ? `${domains.slice(0, 3).join(",")} +${domains.length - 3} more` : domains.join(",");
      return arr(vh.routes).map((r) => {
        const m = obj(r.match);
        const match = m.prefix !== undefined ? `${str(m.prefix) || "/"}*` : m.path !== undefined ? str(m.path) : m.safe_regex ? `regex ${str(obj(m.safe_regex).regex)}` : "/*";
        const route = obj(r.route);
        const dest = route.cluster ? str(route.cluster) : route.weighted_clusters ? "weighted" : r.direct_response ? `direct ${str(obj(r.direct_response).status)}` : "-";
        return [str(rc.name), str(vh.name), shown, match, dest];
      });
    }),
  );
}

function endpointRows(clas: Json[]): string[][] {
  return clas.flatMap((cla) =>
    arr(cla.endpoints).flatMap((le) => {
      const loc = obj(le.locality);
      const locality = [str(loc.region), str(loc.zone), str(loc.sub_zone)].filter(Boolean).join("/") || "-";
      return arr(le.lb_endpoints).map((lb) => {
        const sa = obj(obj(obj(lb.endpoint).address).socket_address);
        return [`${str(sa.address)}:${str(sa.port_value)}`, str(lb.health_status) || "UNKNOWN", locality, str(obj(lb.load_balancing_weight).value ?? lb.load_balancing_weight) || "1", str(cla.cluster_name)];
      });
    }),
  );
}

const HEADERS: Record<Exclude<Kind, "secret">, string[]> = {
  cluster: ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "TLS (PEER SAN)"],
  listener: ["NAME", "ADDRESS", "PORT", "MATCH", "DESTINATION"],
  route: ["NAME", "VIRTUAL HOST", "DOMAINS", "MATCH", "CLUSTER"],
  endpoint: ["ENDPOINT", "STATUS", "LOCALITY", "WEIGHT", "CLUSTER"],
};
const ROWS: Record<Exclude<Kind, "secret">, (r: Json[]) => string[][]> = { cluster: clusterRows, listener: listenerRows, route: routeRows, endpoint: endpointRows };

function secretTable(rows: SecretRow[]): string {
  let out = formatTable(
    ["RESOURCE NAME", "TYPE", "STATUS", "SAN", "SERIAL NUMBER", "NOT BEFORE", "NOT AFTER"],
    rows.map((r) => [r.name, r.type, r.status, r.san || "-", r.serial || "-", r.notBefore || "-", r.notAfter || "-"]),
  );
  for (const r of rows) if (r.fingerprint) out += `${terminalSafe(r.name)} SHA256 Fingerprint=${r.fingerprint}\n`;
  return out;
}

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const { values, positionals } = parseFlags(
        argv,
        {
          xds: { type: "string", default: DEFAULT_XDS },
          admin: { type: "string", default: DEFAULT_ADMIN },
          envoy: { type: "string" },
          output: { type: "string", short: "o", default: "table" },
        },
        true,
      );
      const [kindArg, nodeId, ...extra] = positionals;
      if (kindArg === undefined) throw new UsageError(`proxy-config needs a kind: ${KINDS.join(" | ")}`);
      const kind = (KINDS as readonly string[]).includes(kindArg) ? (kindArg as Kind) : ALIASES[kindArg];
      if (!kind) throw new UsageError(`proxy-config: "${kindArg}" is not one of ${KINDS.join(" | ")}`);
      if (extra.length > 0) throw new UsageError("proxy-config takes one kind and one NODE");
      if (values.output !== "table" && values.output !== "json") throw new UsageError(`-o/--output: "${values.output}" is not table or json`);
      let source: ResourceSource;
      if (values.envoy !== undefined) {
        source = envoySource(envoyUrlFlag(values.envoy));
      } else {
        if (nodeId === undefined) throw new UsageError("proxy-config needs a NODE id (see meshkey proxy-status) or --envoy URL");
        source = meshkeySource({ xds: addressFlag(values.xds, "--xds"), admin: addressFlag(values.admin, "--admin") }, nodeId);
      }
      if (kind === "secret") {
        if (values.output === "json") process.stdout.write(`${JSON.stringify(await source.secretsJson(), null, 2)}\n`);
        else process.stdout.write(secretTable(await source.secrets()));
        return 0;
      }
      const resources = await source.resources(kind);
      if (values.output === "json") process.stdout.write(`${JSON.stringify(resources, null, 2)}\n`);
      else process.stdout.write(formatTable(HEADERS[kind], ROWS[kind](resources)));
      return 0;
    }),
};
