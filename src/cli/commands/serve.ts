// `meshkey serve`: CA, SDS node agent, ADS control plane and admin in one process.
import type { CliCommand } from "../command.js";
import { runCommand } from "../command.js";
import { parseHostPort, resolveServeConfig, type ServeConfig } from "../serve-config.js";
import { startMeshkey, describeRunningMeshkey } from "../meshkey-process.js";
import { createMeshkeyLogger } from "../log-output.js";

const help = `meshkey serve — run the CA, the SDS node agent, the ADS control plane and the admin server

Usage: meshkey serve [--config FILE] [flags]

Flags (the same kebab-case keys work in the YAML --config file; flags win):
  --state-dir DIR          CA root and dev token issuer (mode 0600), never a workload key   [.meshkey]
  --trust-domain TD        SPIFFE trust domain                                               [cluster.local]
  --mesh FILE              mesh YAML (watched); default: the seeds' sample (httpbin, sleep in foo and bar).
                           A change that is not valid, an empty file or one with no "services" key
                           (write "services: []" for an empty mesh) is refused: the last good config serves
  --max-mesh-bytes N       refuse a larger mesh file, before parsing it                      [16777216]
  --guard-mass-removal     refuse a mesh change that removes more than half of the services
                           (without it: a warning)
  --sds-socket PATH        SDS Unix socket  [/var/run/sds/uds_path, else <state-dir>-sds/uds_path (0755) if /var/run/sds is not writable]
  --xds-listen HOST:PORT   ADS + CSDS                                                        [127.0.0.1:15010]
  --xds-tls-listen HOST:PORT
                           ADS + CSDS over mTLS, as istiod's 15012: server certificate
                           spiffe://<td>/ns/istio-system/sa/istiod from the in-process CA,
                           client certificate required and matched to the node's identity
                           (only when the CA runs in this process)
                           [127.0.0.1:15011; port 0 when --xds-listen asks for port 0]
  --ca-listen HOST:PORT    IstioCertificateService over TLS                                  [127.0.0.1:15012]
  --admin-listen HOST:PORT /healthz /readyz /metrics /debug/{sds,syncz,config_dump}          [127.0.0.1:15014]
  --cert-ttl DUR           workload certificate lifetime                                     [24h]
  --max-cert-ttl DUR       longest lifetime a caller may ask for                             [90d]
  --key-type T             ec-p256 | rsa-2048                                                [ec-p256]
  --grace-ratio R          rotate when this fraction of the lifetime is left (±1% jitter)    [0.5]
  --jwks FILE|URL          JWKS that verifies service-account tokens   [the dev issuer's, in --state-dir]
  --jwt-issuer ISS         required iss (OIDC discovery when --jwks is not given)
  --jwt-audience AUD       required aud                                                      [istio-ca]
  --token-review URL       verify tokens with the Kubernetes TokenReview API instead
  --ca-provider P          builtin | istio | vault: where the SDS agent gets certificates    [builtin]
  --ca-address HOST:PORT   remote IstioCertificateService (with --ca-provider istio)
  --ca-root-cert FILE      root PEM that the remote CA's TLS certificate chains to
  --vault-address URL --vault-auth-path P --vault-role R --vault-sign-path P --vault-ca-cert FILE
  --plugin-certs DIR       Istio cacerts (ca-cert.pem ca-key.pem root-cert.pem cert-chain.pem)
  --token-path PATH        token file Envoy sends over SDS, written into pushed config
                                                              [/var/run/secrets/tokens/istio-token]
  --no-sds --no-xds --no-ca  leave a part out (split deployments)
  --log-level L            fatal|error|warn|info|debug|trace|silent (logs go to stderr)     [info]
  --log-format F           json (one JSON object a line) | text (ISO time, LEVEL, message,
                           key=value)                                                        [json]

Examples:
  meshkey serve
  meshkey serve --mesh mesh.yaml --sds-socket /tmp/sds/uds_path
  meshkey serve --no-xds --no-ca --ca-provider istio --ca-address 10.0.0.5:15012 \\
                --ca-root-cert root.pem --jwks jwks.json          # a node agent only
`;

/** EADDRINUSE names the flag whose address is taken, not just the address. */
function nameTakenAddress(err: unknown, config: ServeConfig): unknown {
  const e = err as (NodeJS.ErrnoException & { port?: number }) | undefined;
  if (e?.code !== "EADDRINUSE" || typeof e.port !== "number") return err;
  const flags = [
    ["--xds-listen", config.xdsListen],
    ["--xds-tls-listen", config.xdsTlsListen],
    ["--ca-listen", config.caListen],
    ["--admin-listen", config.adminListen],
  ] as const;
  const taken = flags.find(([, address]) => parseHostPort(address, "").port === e.port);
  if (!taken) return err;
  return new Error(`${taken[0]} ${taken[1]}: address already in use (another meshkey, or another process, listens there): choose another ${taken[0]}`);
}

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const config = resolveServeConfig(argv);
      const log = createMeshkeyLogger({ level: config.logLevel, format: config.logFormat });
      const running = await startMeshkey(config, log).catch((err: unknown) => {
        throw nameTakenAddress(err, config);
      });
      process.stdout.write(describeRunningMeshkey(running));

      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (signal: NodeJS.Signals) => {
          if (stopping) return;
          stopping = true;
          log.info({ signal }, "shutting down");
          // Hard deadline: exit even if a peer refuses to let go.
          setTimeout(() => process.exit(1), 9_000).unref();
          void running.close().then(resolve, (err: unknown) => {
            log.error({ err }, "shutdown failed");
            resolve();
          });
        };
        process.once("SIGTERM", stop);
        process.once("SIGINT", stop);
      });
      return 0;
    }),
};
