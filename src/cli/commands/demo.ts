// `meshkey demo`: the seeds' four mTLS requests, end to end, on this machine
// (Node workloads, or real Envoy sidecars with --envoy).
import type { CliCommand } from "../command.js";
import { parseFlags, runCommand, UsageError } from "../command.js";
import { runDemo } from "../demo.js";
import { runEnvoyDemo } from "../demo-envoy.js";

const help = `meshkey demo — the seeds' verification over real mutual TLS, runnable anywhere

Starts meshkey (CA, SDS, ADS) on free ports and temporary paths, mints
service-account tokens for sleep and httpbin in foo and bar, runs four workloads
that get their certificates over SDS, and makes the seeds' four requests. Then
shows that no workload key file exists, and that an identity that is not allowed
is refused.

Without --envoy the workloads are Node apps using meshkey's Node SDS client.
With --envoy each workload is a Node app behind a real Envoy sidecar (the
bootstrap of \`meshkey bootstrap --role sidecar\`, fed by ADS and by SDS over the
Unix socket with the token file as call credentials), on the sample mesh's pod
IPs 127.0.1.1, 127.0.1.2, 127.0.2.1, 127.0.2.2; it also prints each Envoy's
/certs, and shows an Envoy with a token from another issuer getting no
certificate. Envoy comes from ENVOY_BIN, else .envoy/ (bash scripts/install-envoy.sh).

Usage: meshkey demo [--envoy] [--rotate] [--cert-ttl SECONDS] [--log-level LEVEL]

  --envoy           real Envoy sidecars instead of Node SDS clients
  --rotate          short-lived certificates (default 8 s) and traffic through
                    rotations (expects zero failed requests; with --envoy, the
                    same Envoy PIDs before and after)
  --cert-ttl N      certificate lifetime in seconds with --rotate (default 8)
  --log-level L     meshkey's own log on stderr (default silent)

Exit status: 0 passed, 1 a check failed (or no Envoy for --envoy), 2 usage error.

Examples:
  meshkey demo --rotate
  meshkey demo --envoy --rotate
  ENVOY_BIN=/usr/local/bin/envoy meshkey demo --envoy
`;

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const { values } = parseFlags(argv, {
        envoy: { type: "boolean" },
        rotate: { type: "boolean" },
        "cert-ttl": { type: "string" },
        "log-level": { type: "string" },
      });
      let ttl: number | undefined;
      if (values["cert-ttl"] !== undefined) {
        ttl = Number(values["cert-ttl"]);
        if (!/^\d+$/.test(values["cert-ttl"]) || ttl < 2) throw new UsageError(`--cert-ttl must be a whole number of seconds >= 2, got ${JSON.stringify(values["cert-ttl"])}`);
        if (values.rotate !== true) throw new UsageError("--cert-ttl goes with --rotate");
      }
      const out = (line: string) => process.stdout.write(`${line}\n`);
      const logLevel = typeof values["log-level"] === "string" ? { logLevel: values["log-level"] } : {};
      const rotateTtl = ttl !== undefined ? { rotateTtlSeconds: ttl } : {};
      if (values.envoy === true) {
        return runEnvoyDemo({ rotate: values.rotate === true, out, err: (line) => process.stderr.write(`${line}\n`), ...rotateTtl, ...logLevel });
      }
      return runDemo({ rotate: values.rotate === true, out, ...rotateTtl, ...logLevel });
    }),
};
