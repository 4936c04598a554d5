// meshkey validate FILE…: strict offline Envoy config validation.
import { readFile } from "node:fs/promises";
import { runCommand, parseFlags, UsageError, type CliCommand } from "../command.js";
import { ConfigTextError, formatIssues, parseConfigText, validateEnvoyConfig, type EnvoyConfigKind } from "../../envoy/index.js";

const help = `Usage: meshkey validate [--kind auto|bootstrap|resource|resources|config_dump] [--quiet] FILE…|-

Checks Envoy v3 config files (JSON or YAML) offline: strict proto3 JSON (unknown
fields and unknown @types rejected), the PGV (validate.rules) annotations of
Envoy's protos, and load-time cross-references (referenced clusters exist, one
SDS config source per secret name). A file is a bootstrap, one resource (an
object with "@type"), a list of resources (an array or {resources: [...]}), or
an admin config_dump (a live Envoy's /config_dump, meshkey's /debug/config_dump,
\`meshkey render\`; in the endpoints Envoy prints, a locality weight of 0 means
unset and is accepted). FILE - reads standard input. Issues are printed as
FILE: path: message.

Exit status: 0 all valid, 1 some file invalid, 2 a file unreadable or unparseable.

Example:
  meshkey bootstrap --role sidecar --node-id sidecar~10.0.0.1~httpbin.foo -o envoy.json
  meshkey validate envoy.json
  curl -s 127.0.0.1:15000/config_dump | meshkey validate -`;

const KINDS = ["auto", "bootstrap", "resource", "resources", "config_dump"];

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const { values, positionals } = parseFlags(argv, { kind: { type: "string" }, quiet: { type: "boolean", short: "q" } }, true);
      const kind = (values.kind ?? "auto") as EnvoyConfigKind | "auto";
      if (!KINDS.includes(kind)) throw new UsageError(`--kind must be one of ${KINDS.join(", ")}`);
      if (positionals.length === 0) throw new UsageError("no file to validate (FILE, or - for standard input)");
      if (positionals.filter((f) => f === "-").length > 1) throw new UsageError("- (standard input) can be given once");
      let status = 0;
      for (const file of positionals) {
        let input: unknown;
        try {
          input = parseConfigText(file === "-" ? await readStdin() : await readFile(file, "utf8"), file === "-" ? "(stdin)" : file);
        } catch (err) {
          const msg = err instanceof ConfigTextError ? err.message : `${file}: cannot read: ${(err as Error).message}`;
          process.stderr.write(`${msg}\n`);
          status = 2;
          continue;
        }
        const r = validateEnvoyConfig(input, { kind });
        const name = file === "-" ? "(stdin)" : file;
        if (r.issues.length > 0) {
          process.stdout.write(`${formatIssues(r.issues, `${name}: `)}\n`);
          status = Math.max(status, 1);
        } else if (!values.quiet) {
          process.stdout.write(`${name}: valid ${r.kind}\n`);
        }
      }
      return status;
    }),
};

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
