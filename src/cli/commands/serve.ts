// `meshkey serve`: CA, SDS node agent, ADS control plane and admin in one process.
import type { CliCommand } from "../command.js";
import { runCommand } from "../command.js";
import { parseHostPort, resolveServeConfig, type ServeConfig } from "../serve-config.js";
import { serveFlagsHelp } from "../serve-flags-help.js";
import { startMeshkey, describeRunningMeshkey } from "../meshkey-process.js";
import { createMeshkeyLogger } from "../log-output.js";

const help = `meshkey serve — run the CA, the SDS node agent, the ADS control plane and the admin server

Usage: meshkey serve [--config FILE] [flags]

Flags [default]:
${serveFlagsHelp()}
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
