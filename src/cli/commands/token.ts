// `meshkey token`: prints a service-account JWT from the dev issuer in the state dir.
import { openDevTokenIssuer } from "../../ca/index.js";
import { parseDurationSeconds } from "../duration.js";
import { DEV_TOKEN_DEFAULT_TTL_SECONDS } from "../serve-config.js";
import { UsageError, parseFlags, runCommand, type CliCommand } from "../command.js";

const help = `meshkey token — print a service-account JWT from the dev issuer

Usage: meshkey token --namespace NS --service-account SA [--ttl 24h] [--audience istio-ca] [--state-dir DIR]

The token carries the claims of a Kubernetes projected service-account token
(iss, sub system:serviceaccount:NS:SA, aud, exp, iat, nbf, kubernetes.io).
The issuer's key lives in the state dir (mode 0600); its public keys are in
<state-dir>/jwks.json, which \`meshkey serve\` trusts by default.

Options:
  --namespace, -n NS          Kubernetes namespace (required)
  --service-account, -s SA    service account name (required)
  --ttl DURATION              lifetime: 24h (default: a certificate's default life, twice
                              its default rotation period), 30m, 3600, 1d…
  --audience AUD              aud claim (default istio-ca); repeat for several
  --state-dir DIR             state directory (default .meshkey)

Example:
  meshkey token --namespace foo --service-account httpbin --ttl 2h
`;

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const { values } = parseFlags(argv, {
        namespace: { type: "string", short: "n" },
        "service-account": { type: "string", short: "s" },
        ttl: { type: "string", default: `${DEV_TOKEN_DEFAULT_TTL_SECONDS}s` },
        audience: { type: "string", multiple: true },
        "state-dir": { type: "string", default: ".meshkey" },
      });
      if (!values.namespace) throw new UsageError("--namespace is required");
      if (!values["service-account"]) throw new UsageError("--service-account is required");
      let ttlSeconds: number;
      try {
        ttlSeconds = parseDurationSeconds(values.ttl!, "--ttl");
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      if (ttlSeconds <= 0) throw new UsageError("--ttl must be positive");
      const audiences = values.audience ?? ["istio-ca"];
      const issuer = await openDevTokenIssuer(values["state-dir"]!);
      const token = await issuer.mint({
        namespace: values.namespace,
        serviceAccount: values["service-account"],
        ttlSeconds,
        audience: audiences.length === 1 ? audiences[0]! : audiences,
      });
      process.stdout.write(`${token}\n`);
      return 0;
    }),
};
