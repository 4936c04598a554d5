// `meshkey render`: writes, per node, what the control plane would serve for a mesh
// in one of Envoy's own forms (same translation as ADS): the config dump a synced
// Envoy prints, or a static bootstrap that `envoy -c` runs.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { defaultMesh, loadMeshFile } from "../../mesh/index.js";
import { DEFAULT_SDS_SOCKET } from "../../spiffe/index.js";
import { RENDER_FORMATS, renderMesh, type RenderFormat } from "../../xds/index.js";
import { parseFlags, runCommand, UsageError, type CliCommand } from "../command.js";

const help = `meshkey render — write what the control plane serves each node, in Envoy's own forms

Usage: meshkey render --out DIR [--format config-dump|bootstrap] [--mesh FILE]
                      [--trust-domain TD] [--sds-socket PATH] [--token-path PATH]
                      [--sds-mode google_grpc|envoy_grpc] [--admin-port N]

Writes one file per node: sidecar-<pod>.<ns>.json for a sidecar of each service in
the mesh (node sidecar~<first endpoint address>~<name>-0.<ns>~<ns>.svc.cluster.local,
with the node metadata \`meshkey bootstrap --role sidecar\` writes) and, for
config-dump, proxyless-grpc.json for a proxyless gRPC client (metadata GENERATOR: grpc).

Formats:
  config-dump  (default) an envoy.admin.v3.ConfigDump exactly as a sidecar synced by
               meshkey prints GET /config_dump?include_eds: the bootstrap's node,
               dynamic_active_clusters, the endpoints of every cluster, dynamic
               listeners (active_state), routes inlined in listeners (static route
               configs) and RDS routes, and the SDS secrets default/ROOTCA (without
               key material: the node agent issues it at run time). Sensitive
               fields are redacted as Envoy redacts them. No last_updated.
               Compare one with a live Envoy: meshkey diff FILE live-dump.json
  bootstrap    a static bootstrap that \`envoy -c FILE\` runs with no control plane:
               the node, an admin on 127.0.0.1:--admin-port, the same listeners with
               their routes inlined, the same clusters with EDS replaced by an inline
               load_assignment; TLS contexts still get default/ROOTCA from the SDS
               socket with the token file. Sidecars only.

Options:
  --mesh FILE          mesh YAML (default: the built-in sample: httpbin + sleep in foo and bar)
  --out DIR            output directory (created if missing)
  --format F           config-dump (default) or bootstrap
  --trust-domain TD    SPIFFE trust domain (default cluster.local)
  --sds-socket PATH    SDS Unix socket referenced by TLS contexts (default ${DEFAULT_SDS_SOCKET})
  --token-path PATH    service-account token file sent to SDS (default /var/run/secrets/tokens/istio-token)
  --sds-mode MODE      google_grpc (default, the seeds' shape) or envoy_grpc (cluster sds-grpc)
  --admin-port N       admin port of a bootstrap (default 15000)

Example:
  meshkey render --mesh fixtures/mesh/sample.yaml --out /tmp/rendered
  meshkey render --mesh fixtures/mesh/sample.yaml --format bootstrap --out /tmp/static
  envoy -c /tmp/static/sidecar-httpbin-0.foo.json
`;

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const { values } = parseFlags(argv, {
        mesh: { type: "string" },
        out: { type: "string" },
        format: { type: "string", default: "config-dump" },
        "trust-domain": { type: "string", default: "cluster.local" },
        "sds-socket": { type: "string", default: DEFAULT_SDS_SOCKET },
        "token-path": { type: "string", default: "/var/run/secrets/tokens/istio-token" },
        "sds-mode": { type: "string", default: "google_grpc" },
        "admin-port": { type: "string", default: "15000" },
      });
      if (!values.out) throw new UsageError("--out DIR is required");
      const mode = values["sds-mode"];
      if (mode !== "google_grpc" && mode !== "envoy_grpc") throw new UsageError(`--sds-mode must be google_grpc or envoy_grpc, not "${mode}"`);
      const format = values.format as RenderFormat;
      if (!RENDER_FORMATS.includes(format)) throw new UsageError(`--format must be ${RENDER_FORMATS.join(" or ")}, not "${values.format}"`);
      const adminPort = Number(values["admin-port"]);
      if (!/^\d+$/.test(values["admin-port"]!) || adminPort < 1 || adminPort > 65535) throw new UsageError(`--admin-port must be a port number (1-65535), got "${values["admin-port"]}"`);
      const mesh = values.mesh ? await loadMeshFile(values.mesh) : defaultMesh;
      const rendered = renderMesh(mesh, {
        trustDomain: values["trust-domain"]!,
        sdsSocketPath: values["sds-socket"]!,
        tokenPath: values["token-path"]!,
        sdsMode: mode,
        format,
        adminPort,
      });
      await mkdir(values.out, { recursive: true });
      for (const r of rendered) await writeFile(join(values.out, r.file), r.json);
      process.stdout.write(`wrote ${rendered.length} ${format} files to ${values.out}: ${rendered.map((r) => r.file).join(", ")}\n`);
      return 0;
    }),
};
