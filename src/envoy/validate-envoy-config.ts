// `meshkey validate`: strict parse, PGV rules, and the load-time cross-reference
// checks Envoy makes that matter for meshkey's configs:
// - clusters named by routes, tcp_proxy and envoy_grpc exist (static clusters of a
//   bootstrap; static + dynamic clusters of a config_dump; the clusters of a list);
// - every sds_config that fetches the same secret name is identical (otherwise
//   Envoy opens one SDS stream per distinct config source).
import { equals, type DescMessage, type Message } from "@bufbuild/protobuf";
import type { Bootstrap } from "../../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import { ConfigSourceSchema, type ConfigSource } from "../../gen/envoy/config/core/v3/config_source_pb.js";
import { detectConfigKind, parseEnvoyConfig, type EnvoyConfigKind, type ParsedEnvoyConfig } from "./envoy-config.js";
import { indexPath, joinPath, type ValidationIssue } from "./issue-path.js";
import { ConfigSchemaError } from "./parse-message-json.js";
import { validateTree } from "./validate-message.js";

export interface ValidateEnvoyConfigOptions {
  kind?: EnvoyConfigKind | "auto";
}

export interface EnvoyConfigValidation {
  kind: EnvoyConfigKind | "unknown";
  issues: ValidationIssue[];
}

interface ClusterRef {
  name: string;
  path: string;
  via: "route" | "tcp_proxy" | "envoy_grpc";
}

interface SdsUse {
  name: string;
  config: ConfigSource;
  path: string;
}

/** What the validation walk collects for the cross-reference checks. */
class References {
  readonly clusterRefs: ClusterRef[] = [];
  readonly sdsUses: SdsUse[] = [];
  /** Every Cluster met in the walk (Any payloads included), with its path. */
  readonly clusters: { name: string; path: string }[] = [];
  /** Paths of RouteConfigurations with validate_clusters: false (their routes are not checked). */
  readonly unvalidatedRouteConfigs: string[] = [];

  readonly visit = (schema: DescMessage, msg: Message, path: string): void => {
    const m = msg as unknown as Record<string, unknown>;
    switch (schema.typeName) {
      case "envoy.config.cluster.v3.Cluster":
        this.clusters.push({ name: m.name as string, path });
        break;
      case "envoy.config.route.v3.RouteConfiguration":
        if (m.validateClusters === false) this.unvalidatedRouteConfigs.push(path);
        break;
      case "envoy.config.route.v3.RouteAction":
      case "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy": {
        const via = schema.typeName.endsWith("TcpProxy") ? "tcp_proxy" : "route";
        const spec = m.clusterSpecifier as { case?: string; value?: unknown };
        if (spec.case === "cluster") this.clusterRefs.push({ name: spec.value as string, path: joinPath(path, "cluster"), via });
        if (spec.case === "weightedClusters") {
          const clusters = (spec.value as { clusters: { name: string }[] }).clusters;
          clusters.forEach((c, i) => this.clusterRefs.push({ name: c.name, path: joinPath(indexPath(joinPath(path, "weighted_clusters.clusters"), i), "name"), via }));
        }
        break;
      }
      case "envoy.config.core.v3.GrpcService.EnvoyGrpc":
        this.clusterRefs.push({ name: m.clusterName as string, path: joinPath(path, "cluster_name"), via: "envoy_grpc" });
        break;
      case "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig":
        if (m.sdsConfig) this.sdsUses.push({ name: m.name as string, config: m.sdsConfig as ConfigSource, path: joinPath(path, "sds_config") });
        break;
      default:
        break;
    }
  };
}

function checkClusterRefs(parsed: ParsedEnvoyConfig, refs: References, out: ValidationIssue[]): void {
  // Clusters in use: a bootstrap's static ones; in a dump, all but rejected updates.
  const clusters = refs.clusters.filter((c) =>
    parsed.kind === "bootstrap" ? c.path.startsWith("static_resources.clusters[") : !/(^|\.)error_state\./.test(c.path),
  );
  const names = new Set(clusters.map((c) => c.name));
  let scope: string;
  let checkRoutes = true;
  switch (parsed.kind) {
    case "bootstrap": {
      scope = "static cluster";
      // With CDS, routes and tcp_proxy may name clusters that arrive later; an
      // envoy_grpc cluster must always be static (it carries the xDS streams).
      const dyn = (parsed.roots[0]?.message as Bootstrap | undefined)?.dynamicResources;
      checkRoutes = dyn?.cdsConfig === undefined && dyn?.cdsResourcesLocator === undefined;
      break;
    }
    case "config_dump":
      scope = "static or dynamic cluster";
      break;
    default:
      if (clusters.length === 0) return; // a list without clusters says nothing about them
      scope = "cluster in this list";
  }
  for (const ref of refs.clusterRefs) {
    if (ref.via !== "envoy_grpc" && !checkRoutes) continue;
    if (ref.via === "route" && refs.unvalidatedRouteConfigs.some((p) => ref.path.startsWith(p === "" ? p : `${p}.`))) continue;
    if (!names.has(ref.name)) out.push({ path: ref.path, message: `cluster ${JSON.stringify(ref.name)} is not defined (no ${scope} has this name)` });
  }
}

function checkSdsConsistency(refs: References, out: ValidationIssue[]): void {
  const first = new Map<string, SdsUse>();
  for (const use of refs.sdsUses) {
    const prev = first.get(use.name);
    if (!prev) first.set(use.name, use);
    else if (!equals(ConfigSourceSchema, prev.config, use.config)) {
      out.push({
        path: use.path,
        message: `differs from the sds_config for secret ${JSON.stringify(use.name)} at ${prev.path} (Envoy would open a second SDS stream for it)`,
      });
    }
  }
}

/** Checks an already parsed config: PGV rules, then cross-references. */
/**
 * Envoy prints the endpoints it holds (/config_dump?include_eds) with
 * `load_balancing_weight: 0` on a locality that has no weight, below the rule's
 * minimum of 1 for a ClusterLoadAssignment Envoy is sent. In a dump's endpoint
 * configs that is Envoy's spelling of "unset", not a mistake.
 */
const ENVOY_PRINTED_LOCALITY_WEIGHT = /_endpoint_configs\[\d+\]\.endpoint_config\.endpoints\[\d+\]\.load_balancing_weight$/;

export function validateParsedConfig(parsed: ParsedEnvoyConfig): ValidationIssue[] {
  const refs = new References();
  let issues: ValidationIssue[] = [];
  for (const root of parsed.roots) validateTree(root.schema, root.message, { rootPath: root.path, visit: refs.visit, out: issues });
  if (parsed.kind === "config_dump") issues = issues.filter((i) => !(ENVOY_PRINTED_LOCALITY_WEIGHT.test(i.path) && /greater than or equal to 1$/.test(i.message)));
  checkClusterRefs(parsed, refs, issues);
  checkSdsConsistency(refs, issues);
  return issues;
}

/**
 * Validates parsed JSON/YAML as Envoy config: a bootstrap, a resource (object
 * with "@type"), a list of resources (array or {resources: […]}), or an admin
 * config_dump. Returns the detected kind and every issue with its JSON path.
 */
export function validateEnvoyConfig(input: unknown, opts: ValidateEnvoyConfigOptions = {}): EnvoyConfigValidation {
  let parsed: ParsedEnvoyConfig;
  try {
    parsed = parseEnvoyConfig(input, opts.kind ?? "auto");
  } catch (err) {
    if (!(err instanceof ConfigSchemaError)) throw err;
    let kind: EnvoyConfigKind | "unknown" = "unknown";
    try {
      kind = opts.kind && opts.kind !== "auto" ? opts.kind : detectConfigKind(input);
    } catch {
      /* not even an object */
    }
    return { kind, issues: err.issues };
  }
  return { kind: parsed.kind, issues: validateParsedConfig(parsed) };
}
