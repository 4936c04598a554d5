// meshkey bootstrap: render a validated Envoy bootstrap for a role.
import { writeFile } from "node:fs/promises";
import { runCommand, parseFlags, UsageError, type CliCommand } from "../command.js";
import { BOOTSTRAP_ROLES, BootstrapError, renderBootstrap, type BootstrapRole } from "../../bootstrap/index.js";
import { DEFAULT_SDS_SOCKET } from "../../spiffe/index.js";

const help = `Usage: meshkey bootstrap --role sidecar|pilot|ingress|mixer-like --node-id ID [options]

Renders an Envoy v3 bootstrap from templates/, checks it (strict proto JSON, PGV
rules, cluster references) and prints it.

Options:
  --namespace NS            workload namespace (sidecar default: default)
  --service-account SA      workload service account (sidecar default: default)
  --trust-domain TD         SPIFFE trust domain (default cluster.local)
  --xds-address HOST:PORT[,HOST:PORT…]
                            control plane ADS address (default 127.0.0.1:15010, serve's
                            plaintext --xds-listen; with --xds-tls 127.0.0.1:15011).
                            Several (comma-separated and/or the flag repeated): the
                            control-plane replicas, one endpoint each of cluster xds-grpc;
                            Envoy moves to another one when its replica dies
  --xds-tls                 reach ADS over mTLS (serve's --xds-tls-listen): the SDS
                            certificate as client certificate, the server checked
                            against ROOTCA and the control-plane identity
  --control-plane-identity NS/SA
                            the control plane's namespace/service account: what
                            sidecars expect of ADS, what --role pilot runs as
                            (default istio-system/istiod)
  --sds-socket PATH         SDS Unix socket (default ${DEFAULT_SDS_SOCKET})
  --token-path PATH         token file sent to SDS (default /var/run/secrets/tokens/istio-token)
  --listen-port N           mTLS listener port of pilot|ingress|mixer-like (15011|8443|15004)
  --listen-address IP       address that listener binds (default 0.0.0.0)
  --local-port N            local upstream port of pilot|ingress|mixer-like (15010|8080|9091)
  --admin-port N            Envoy admin port on 127.0.0.1 (default 15000)
  --format json|yaml        output format (default json)
  -o, --output FILE         write to FILE instead of stdout

Exit status: 0 rendered, 1 the bootstrap could not be rendered, 2 usage error.

Example:
  meshkey bootstrap --role sidecar --node-id sidecar~127.0.1.1~httpbin-1.foo~foo.svc.cluster.local \\
    --namespace foo --service-account httpbin --xds-address 127.0.0.1:15010 \\
    --sds-socket ${DEFAULT_SDS_SOCKET} --token-path ./istio-token --admin-port 15000 -o envoy.json
  envoy -c envoy.json
  # two control-plane replicas:
  meshkey bootstrap … --xds-address 10.0.0.5:15010,10.0.0.6:15010 -o envoy.json`;

function port(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 65535) throw new UsageError(`${flag} must be a port number (1-65535), got ${JSON.stringify(value)}`);
  return n;
}

/** renderBootstrap's option names → the flags that set them. */
const optionFlags: Record<string, string> = {
  xdsAddress: "--xds-address",
  controlPlaneNamespace: "--control-plane-identity",
  controlPlaneServiceAccount: "--control-plane-identity",
  namespace: "--namespace",
  serviceAccount: "--service-account",
  trustDomain: "--trust-domain",
  sdsSocket: "--sds-socket",
  tokenPath: "--token-path",
  adminPort: "--admin-port",
  listenAddress: "--listen-address",
  listenPort: "--listen-port",
  localPort: "--local-port",
  nodeCluster: "--node-id",
  controlPlaneSni: "--control-plane-identity",
};

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const { values } = parseFlags(argv, {
        role: { type: "string" },
        "node-id": { type: "string" },
        namespace: { type: "string" },
        "service-account": { type: "string" },
        "trust-domain": { type: "string" },
        "xds-address": { type: "string", multiple: true },
        "xds-tls": { type: "boolean" },
        "control-plane-identity": { type: "string" },
        "sds-socket": { type: "string" },
        "token-path": { type: "string" },
        "listen-port": { type: "string" },
        "listen-address": { type: "string" },
        "local-port": { type: "string" },
        "admin-port": { type: "string" },
        format: { type: "string" },
        output: { type: "string", short: "o" },
      });
      const role = values.role as BootstrapRole | undefined;
      if (!role) throw new UsageError("--role is required");
      if (!BOOTSTRAP_ROLES.includes(role)) throw new UsageError(`--role must be one of ${BOOTSTRAP_ROLES.join(", ")}`);
      if (!values["node-id"]) throw new UsageError("--node-id is required");
      const format = values.format ?? "json";
      let controlPlane: { controlPlaneNamespace: string; controlPlaneServiceAccount: string } | undefined;
      if (values["control-plane-identity"] !== undefined) {
        const m = /^([^/\s]+)\/([^/\s]+)$/.exec(values["control-plane-identity"]);
        if (!m) throw new UsageError(`--control-plane-identity must be NAMESPACE/SERVICE_ACCOUNT, got ${JSON.stringify(values["control-plane-identity"])}`);
        controlPlane = { controlPlaneNamespace: m[1]!, controlPlaneServiceAccount: m[2]! };
      }
      if (format !== "json" && format !== "yaml") throw new UsageError("--format must be json or yaml");
      let text: string;
      try {
        ({ text } = renderBootstrap({
          role,
          nodeId: values["node-id"],
          namespace: values.namespace,
          serviceAccount: values["service-account"],
          trustDomain: values["trust-domain"],
          xdsAddress: values["xds-address"],
          xdsTls: values["xds-tls"] ?? false,
          ...controlPlane,
          sdsSocket: values["sds-socket"],
          tokenPath: values["token-path"],
          listenPort: port(values["listen-port"], "--listen-port"),
          listenAddress: values["listen-address"],
          localPort: port(values["local-port"], "--local-port"),
          adminPort: port(values["admin-port"], "--admin-port"),
          format,
        }));
      } catch (err) {
        if (err instanceof BootstrapError) {
          // A bad option value is a usage error, reported under its flag (not the option's
          // internal name); a template that renders badly is a failure (exit 1).
          const option = /^(?:option )?([a-zA-Z]+)\b/.exec(err.message)?.[1];
          const flag = option !== undefined ? optionFlags[option] : undefined;
          if (flag !== undefined) throw new UsageError(err.message.replace(/^(?:option )?[a-zA-Z]+/, flag));
          process.stderr.write(`meshkey bootstrap: ${err.message}\n`);
          return 1;
        }
        throw err;
      }
      if (values.output) await writeFile(values.output, text);
      else process.stdout.write(text);
      return 0;
    }),
};
