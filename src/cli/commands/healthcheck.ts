// `meshkey healthcheck`: a container probe (like `spire-agent healthcheck`): exit 0
// when the admin's /readyz answers 200, 1 otherwise.
import { parseFlags, runCommand, UsageError, type CliCommand } from "../command.js";
import { addressFlag, DEFAULT_ADMIN, httpGet, UnreachableError } from "../meshkey-endpoints.js";
import { terminalSafe } from "../terminal-text.js";

const help = `meshkey healthcheck — exit 0 when a running meshkey is ready, 1 otherwise

Usage: meshkey healthcheck [--admin ADDR] [--quiet]

Asks GET /readyz on meshkey's admin address: 200 (every enabled server listens and
the CA is ready) exits 0; 503 (starting or draining), any other answer, or no answer
exits 1 with the reason on stderr. For container liveness/readiness probes.

Options:
  --admin HOST:PORT   meshkey's admin address (default ${DEFAULT_ADMIN}, serve's --admin-listen)
  --quiet, -q         print nothing, only the exit status

Example:
  meshkey healthcheck --admin 127.0.0.1:15014 && echo ready`;

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const { values, positionals } = parseFlags(argv, { admin: { type: "string", default: DEFAULT_ADMIN }, quiet: { type: "boolean", short: "q" } }, true);
      if (positionals.length > 0) throw new UsageError(`healthcheck takes no arguments (got "${positionals[0]}")`);
      const admin = addressFlag(values.admin, "--admin");
      const say = (stream: NodeJS.WriteStream, text: string) => values.quiet || stream.write(text);
      let res;
      try {
        res = await httpGet(`http://${admin}/readyz`, `meshkey's admin at ${admin} (--admin ADDR)`);
      } catch (err) {
        if (!(err instanceof UnreachableError)) throw err;
        say(process.stderr, `meshkey healthcheck: not ready: ${err.message}\n`);
        return 1;
      }
      if (res.status === 200) {
        say(process.stdout, `ready (${admin})\n`);
        return 0;
      }
      let detail = "";
      try {
        const body = JSON.parse(res.body) as { draining?: boolean; checks?: Record<string, boolean> };
        const failing = Object.entries(body.checks ?? {}).filter(([, ok]) => !ok).map(([k]) => k);
        detail = body.draining ? " (draining)" : failing.length ? ` (not ready: ${failing.join(", ")})` : "";
      } catch {
        /* not meshkey's JSON: the status says enough */
      }
      say(process.stderr, `meshkey healthcheck: not ready: ${admin}/readyz answered ${res.status}${terminalSafe(detail)}\n`);
      return 1;
    }),
};
