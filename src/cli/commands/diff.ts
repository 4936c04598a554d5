// meshkey diff A B: semantic diff of two Envoy configs.
import { readFile } from "node:fs/promises";
import { runCommand, parseFlags, UsageError, type CliCommand } from "../command.js";
import { diffEnvoyConfigs, formatDiff, parseConfigText } from "../../envoy/index.js";

const help = `Usage: meshkey diff [--json] A B

Semantic diff of two Envoy configs or config dumps (JSON or YAML): resources are
matched by type and name, Any payloads unpacked, fields compared as protos
(defaults equal absent; maps and lists of named elements compared by name).
Prints one line per changed path, grouped by resource; --json prints
{"same": bool, "changes": [{"resource", "path", "a", "b"}]}.

Exit status: 0 same, 1 different, 2 error (unreadable or invalid config).

Example:
  meshkey diff before.json after.yaml`;

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const { values, positionals } = parseFlags(argv, { json: { type: "boolean" } }, true);
      if (positionals.length !== 2) throw new UsageError("diff takes exactly two files");
      const [fa, fb] = positionals as [string, string];
      let d;
      try {
        const a = parseConfigText(await readFile(fa, "utf8"), fa);
        const b = parseConfigText(await readFile(fb, "utf8"), fb);
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
