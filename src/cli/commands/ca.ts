// `meshkey ca init|show`: create (or confirm) the CA root in the state dir, print it.
import { join } from "node:path";
import {
  ROOT_CERT_FILE,
  openCertificateAuthority,
  readCertificateInfo,
  readRootCertPem,
  rootTrustDomainOf,
  type KeyType,
} from "../../ca/index.js";
import { UsageError, parseFlags, runCommand, type CliCommand } from "../command.js";

const help = `meshkey ca — the CA root in the state directory

Usage:
  meshkey ca init [--state-dir DIR] [--trust-domain TD] [--key-type ec-p256|rsa-2048]
  meshkey ca show [--state-dir DIR]

init creates the root (O = trust domain, 10 years, files mode 0600) unless one
exists already, which is kept; it prints the root's path and SHA-256 fingerprint (as
\`openssl x509 -noout -fingerprint -sha256\` prints it).
An existing root made for another trust domain than --trust-domain is an error (exit 1):
it is never replaced, and never silently kept for the wrong domain.
show prints the root certificate PEM on stdout and its fingerprint on stderr
(exit 1 when there is none).

Options:
  --state-dir DIR        state directory (default .meshkey)
  --trust-domain TD      trust domain of a new root (default cluster.local)
  --key-type TYPE        key of a new root: ec-p256 (default) or rsa-2048

Examples:
  meshkey ca init --state-dir /var/lib/meshkey --key-type rsa-2048
  meshkey ca show --state-dir /var/lib/meshkey > root-cert.pem
`;

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const { values, positionals } = parseFlags(
        argv,
        {
          "state-dir": { type: "string", default: ".meshkey" },
          "trust-domain": { type: "string" },
          "key-type": { type: "string", default: "ec-p256" },
        },
        true,
      );
      const [sub, ...extra] = positionals;
      if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
      const stateDir = values["state-dir"]!;
      if (sub === "init") {
        const keyType = values["key-type"];
        if (keyType !== "ec-p256" && keyType !== "rsa-2048") {
          throw new UsageError(`--key-type must be ec-p256 or rsa-2048 (got "${keyType}")`);
        }
        const existing = await readRootCertPem(stateDir);
        const asked = values["trust-domain"];
        if (existing !== undefined && asked !== undefined) {
          const rootCertPath = join(stateDir, ROOT_CERT_FILE);
          const has = rootTrustDomainOf(existing, rootCertPath);
          if (has !== asked) {
            process.stderr.write(
              `meshkey ca init: ${rootCertPath} is the root of trust domain ${has === undefined ? "(none: its subject has no O)" : `"${has}"`}, ` +
                `not "${asked}"; it is kept as it is. Use another --state-dir for "${asked}", or move the old root away first\n`,
            );
            return 1;
          }
        }
        const ca = await openCertificateAuthority({ stateDir, trustDomain: asked ?? "cluster.local", keyType: keyType as KeyType });
        const info = readCertificateInfo(ca.rootCertPem);
        process.stdout.write(
          `${existing !== undefined ? "kept existing" : "created"} root ${join(stateDir, ROOT_CERT_FILE)}\n` +
            `sha256 Fingerprint=${info.fingerprintSha256}\nnot after ${info.notAfter.toISOString()}\n`,
        );
        return 0;
      }
      if (sub === "show") {
        const pem = await readRootCertPem(stateDir);
        if (pem === undefined) {
          process.stderr.write(`meshkey ca show: no root in ${stateDir} (run \`meshkey ca init --state-dir ${stateDir}\`)\n`);
          return 1;
        }
        process.stdout.write(pem);
        process.stderr.write(`sha256 Fingerprint=${readCertificateInfo(pem).fingerprintSha256}\n`);
        return 0;
      }
      throw new UsageError(sub === undefined ? "missing subcommand: init or show" : `unknown subcommand "${sub}" (init or show)`);
    }),
};
