// meshkey diff A B: semantic diff of two Envoy configs.
import { readFile } from "node:fs/promises";
import { runCommand, parseFlags, UsageError, type CliCommand } from "../command.js";
import { httpGet } from "../meshkey-endpoints.js";
import { diffEnvoyConfigs, formatDiff, parseConfigText } from "../../envoy/index.js";
import { DEFAULT_SDS_SOCKET } from "../../spiffe/index.js";

const help = `Usage: meshkey diff [--json] A B

Semantic diff of two Envoy configs (JSON or YAML): bootstraps, resources, or config
dumps (a live Envoy's GET /config_dump or /config_dump?include_eds, meshkey's
/debug/config_dump, \`meshkey render\`). A or B may be a live Envoy's admin URL
(http://127.0.0.1:15000): its /config_dump?include_eds is fetched (a URL with a
path, e.g. http://127.0.0.1:15000/config_dump, is fetched as it is). Resources are matched by type and name, Any
payloads unpacked, fields compared as protos (defaults equal absent; maps and lists
of named elements compared by name, order kept where Envoy acts on it). Prints one
line per changed field path, grouped by resource; --json prints
{"same": bool, "changes": [{"resource", "path", "a", "b"}]}.

When A or B is a config dump, only what the mesh decides is compared — what the
Envoy is serving — not what only a running Envoy has:
  - last_updated and version_info are never compared;
  - warming and draining entries and rejected updates (error_state) are ignored;
  - the bootstrap is compared on its node only (id, cluster, metadata, locality):
    its admin, dynamic_resources, runtime and the node fields Envoy adds itself
    (user_agent_*, extensions) are the Envoy's own;
  - static resources of a dump (the bootstrap's xds-grpc cluster and its
    endpoints) are compared only when both sides have them;
  - endpoints are compared only when both sides list some (/config_dump without
    ?include_eds lists none), without the defaults Envoy spells out (empty
    locality, HEALTHY, weight 1, overprovisioning factor 140);
  - sensitive fields are compared redacted, as Envoy prints them (a token file
    name, a private key), and secrets without their certificate and key bytes
    (the node agent issues them at run time): name and kind are compared.
A render --format bootstrap inlines EDS and RDS, so against a live dump its
clusters show as STATIC and its listeners with route_config: compare the
config-dump render with a live Envoy.

Exit status: 0 same, 1 different, 2 error (unreadable or invalid config).

Example:
  meshkey render --mesh mesh.yaml --sds-socket ${DEFAULT_SDS_SOCKET} \\
    --token-path ./istio-token --out rendered
  meshkey diff rendered/sidecar-httpbin-0.foo.json http://127.0.0.1:15000`;

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const { values, positionals } = parseFlags(argv, { json: { type: "boolean" } }, true);
      if (positionals.length !== 2) throw new UsageError("diff takes exactly two files or Envoy admin URLs");
      const [fa, fb] = positionals as [string, string];
      let d;
      try {
        const a = parseConfigText(await readSide(fa), fa);
        const b = parseConfigText(await readSide(fb), fb);
        d = diffEnvoyConfigs(a, b);
      } catch (err) {
        const msg = (err as Error).message.replace(/^config A/, fa).replace(/^config B/, fb);
        process.stderr.write(`meshkey diff: ${msg}\n`);
        return 2;
      }
      process.stdout.write(values.json ? `${JSON.stringify(d, null, 2)}\n` : `${formatDiff(d)}\n`);
      return d.same ? 0 : 1;
    }),
};

/** A file's text, or a live Envoy's config dump when `side` is its admin URL. */
async function readSide(side: string): Promise<string> {
  if (!/^https?:\/\//i.test(side)) return readFile(side, "utf8");
  let url: URL;
  try {
    url = new URL(side);
  } catch {
    throw new Error(`${side}: not a URL`);
  }
  if (url.pathname === "/" || url.pathname === "") {
    url.pathname = "/config_dump";
    url.search = "?include_eds";
  }
  const res = await httpGet(url.href, `Envoy's admin at ${url.origin}`);
  if (res.status !== 200) throw new Error(`${url.href} answered HTTP ${res.status}: ${res.body.slice(0, 200).trim()}`);
  return res.body;
}
