// `meshkey demo`: the seeds' four mTLS requests, end to end, on this machine.
import type { CliCommand } from "../command.js";
import { parseFlags, runCommand } from "../command.js";
import { runDemo } from "../demo.js";

const help = `meshkey demo — the seeds' verification over real mutual TLS, runnable anywhere

Starts meshkey (CA, SDS, ADS) on temporary paths, mints service-account tokens for
sleep and httpbin in foo and bar, runs four Node workloads that get their
certificates over SDS, and makes the seeds' four requests. Then shows that no
workload key file exists, and that an identity that is not allowed is refused.

Usage: meshkey demo [--rotate] [--log-level LEVEL]

  --rotate      use 8-second certificates and keep traffic going through rotations
                (expects zero failed requests)

Example:
  meshkey demo --rotate
`;

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const { values } = parseFlags(argv, { rotate: { type: "boolean" }, "log-level": { type: "string" } });
      return runDemo({
        rotate: values.rotate === true,
        out: (line) => process.stdout.write(`${line}\n`),
        ...(typeof values["log-level"] === "string" ? { logLevel: values["log-level"] } : {}),
      });
    }),
};
