// The `meshkey` command line. Each verb lives in its own file under commands/
// and exports a `command: CliCommand`; this file only dispatches.
import type { CliCommand } from "./command.js";
import { didYouMean } from "./suggest.js";
import { MESHKEY_VERSION } from "./version.js";

const verbs: Record<string, () => Promise<{ command: CliCommand }>> = {
  serve: () => import("./commands/serve.js"),
  token: () => import("./commands/token.js"),
  ca: () => import("./commands/ca.js"),
  bootstrap: () => import("./commands/bootstrap.js"),
  render: () => import("./commands/render.js"),
  validate: () => import("./commands/validate.js"),
  diff: () => import("./commands/diff.js"),
  demo: () => import("./commands/demo.js"),
  "proxy-status": () => import("./commands/proxy-status.js"),
  "proxy-config": () => import("./commands/proxy-config.js"),
  "fetch-secret": () => import("./commands/fetch-secret.js"),
  healthcheck: () => import("./commands/healthcheck.js"),
};

const usage = `meshkey — SPIFFE identity (CA + SDS) and Envoy configuration (ADS) service

Usage: meshkey <command> [options]     (meshkey <command> --help for details)
       meshkey --version

Commands:
  serve       run the CA, the SDS node agent, the ADS control plane and the admin server
  token       print a service-account JWT from the dev issuer
  ca          init | show the CA root
  bootstrap   render an Envoy bootstrap (sidecar, pilot, ingress, mixer-like)
  render      write the resources the control plane would push, per node
  validate    check Envoy config files strictly (proto JSON + PGV rules)
  diff        semantic diff of two Envoy configs (exit 0 same, 1 different, 2 error)
  demo        the seeds' four-request mTLS demo, end to end
  proxy-status  sync state of the connected proxies (CSDS), or of one: sent vs ACKed
  proxy-config  cluster | listener | route | endpoint | secret tables of one proxy
  fetch-secret  fetch default and ROOTCA over the SDS socket as Envoy does, check the chain
  healthcheck   exit 0 when a running meshkey's /readyz is 200 (container probes)
`;

export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined || verb === "--help" || verb === "-h" || verb === "help") {
    process.stdout.write(usage);
    return verb === undefined ? 2 : 0;
  }
  if (verb === "--version" || verb === "-V" || verb === "version") {
    process.stdout.write(`meshkey ${MESHKEY_VERSION} (node ${process.version})\n`);
    return 0;
  }
  const load = Object.hasOwn(verbs, verb) ? verbs[verb] : undefined;
  if (!load) {
    const what = verb.startsWith("-") ? `unknown flag ${verb}${didYouMean(verb, ["--help", "--version"])}` : `unknown command "${verb}"${didYouMean(verb, Object.keys(verbs))}`;
    process.stderr.write(`meshkey: ${what}\n\n${usage}`);
    return 2;
  }
  let command: CliCommand;
  try {
    ({ command } = await load());
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND") {
      process.stderr.write(`meshkey: command "${verb}" is not available in this build\n`);
      return 2;
    }
    throw err;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(command.help.endsWith("\n") ? command.help : `${command.help}\n`);
    return 0;
  }
  return command.run(rest);
}
