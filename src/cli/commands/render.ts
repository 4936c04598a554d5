// `meshkey render`: writes, per proxy kind and node, the resources the control
// plane would push for a mesh, as canonical protobuf JSON (same code path as ADS).
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { defaultMesh, loadMeshFile } from "../../mesh/index.js";
import { renderMesh } from "../../xds/index.js";
import { parseFlags, runCommand, UsageError, type CliCommand } from "../command.js";

const help = `meshkey render — write the resources the control plane would push, per node

Usage: meshkey render --out DIR [--mesh FILE] [--trust-domain TD] [--sds-socket PATH]
                      [--token-path PATH] [--sds-mode google_grpc|envoy_grpc]

Writes one file per node: sidecar-<pod>.<ns>.json for a sidecar of each service in
the mesh and proxyless-grpc.json for a proxyless gRPC client (node metadata
GENERATOR: grpc). Each holds the node and, per xDS type, the version and every
resource as canonical protobuf JSON (sorted keys).

Options:
  --mesh FILE          mesh YAML (default: the built-in sample: httpbin + sleep in foo and bar)
  --out DIR            output directory (created if missing)
  --trust-domain TD    SPIFFE trust domain (default cluster.local)
  --sds-socket PATH    SDS Unix socket referenced by TLS contexts (default /var/run/sds/uds_path)
  --token-path PATH    service-account token file sent to SDS (default /var/run/secrets/tokens/istio-token)
  --sds-mode MODE      google_grpc (default, the seeds' shape) or envoy_grpc (cluster sds-grpc)

Example:
  meshkey render --mesh fixtures/mesh/sample.yaml --out /tmp/rendered
`;

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const { values } = parseFlags(argv, {
        mesh: { type: "string" },
        out: { type: "string" },
        "trust-domain": { type: "string", default: "cluster.local" },
        "sds-socket": { type: "string", default: "/var/run/sds/uds_path" },
        "token-path": { type: "string", default: "/var/run/secrets/tokens/istio-token" },
        "sds-mode": { type: "string", default: "google_grpc" },
      });
      if (!values.out) throw new UsageError("--out DIR is required");
      const mode = values["sds-mode"];
      if (mode !== "google_grpc" && mode !== "envoy_grpc") throw new UsageError(`--sds-mode must be google_grpc or envoy_grpc, not "${mode}"`);
      const mesh = values.mesh ? await loadMeshFile(values.mesh) : defaultMesh;
      const rendered = renderMesh(mesh, {
        trustDomain: values["trust-domain"]!,
        sdsSocketPath: values["sds-socket"]!,
        tokenPath: values["token-path"]!,
        sdsMode: mode,
      });
      await mkdir(values.out, { recursive: true });
      for (const r of rendered) await writeFile(join(values.out, r.file), r.json);
      process.stdout.write(`wrote ${rendered.length} files to ${values.out}: ${rendered.map((r) => r.file).join(", ")}\n`);
      return 0;
    }),
};
