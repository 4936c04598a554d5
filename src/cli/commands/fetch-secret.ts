// `meshkey fetch-secret` (like `spire-agent api fetch x509`): fetches `default` and
// `ROOTCA` over the SDS socket exactly as Envoy does, and checks the chain.
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import * as net from "node:net";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { type MessageInitShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, encodeBinaryHeader } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { DataSource } from "../../../gen/envoy/config/core/v3/base_pb.js";
import { DiscoveryRequestSchema } from "../../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { SecretDiscoveryService } from "../../../gen/envoy/service/secret/v3/sds_pb.js";
import { SecretSchema, type Secret } from "../../../gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js";
import { fingerprintSha256 } from "../../ca/index.js";
import { DEFAULT_SDS_SOCKET, DEFAULT_SECRET_NAME, ROOT_SECRET_NAME, SDS_TOKEN_HEADER, SECRET_TYPE_URL } from "../../spiffe/index.js";
import { parseFlags, runCommand, UsageError, type CliCommand } from "../command.js";
import { UnreachableError } from "../meshkey-endpoints.js";
import { formatAge, terminalSafe } from "../terminal-text.js";
import { checkChain, splitPem, uriSans } from "../x509-text.js";

/** Where `meshkey serve` puts the socket when /var/run/sds is not usable. */
const FALLBACK_SOCKET = join(".meshkey-sds", "uds_path"); // serve's fallback for the default state dir (fallbackSocketDir)
const TIMEOUT_MS = 15_000;

const help = `meshkey fetch-secret — fetch the workload's SDS secrets as Envoy does, and check them

Usage: meshkey fetch-secret --token FILE [--socket PATH] [-o DIR] [--timeout 15s]

Opens one SecretDiscoveryService.StreamSecrets stream per secret, "default" and
"ROOTCA", over the node agent's Unix socket, with the token file's contents in
the ${SDS_TOKEN_HEADER} header (what Envoy's file-based call
credentials send). Prints the certificate's SPIFFE ID, serial, validity, and
whether the chain verifies against ROOTCA. The private key is never printed.

Exit status: 0 when the chain verifies and the certificate is valid now, 1 when
it does not or the agent refuses the token or cannot be reached, 2 for usage.

Options:
  --token FILE      the workload's service-account token (required)
  --socket PATH     the agent's socket (default ${DEFAULT_SDS_SOCKET}, else ${FALLBACK_SOCKET})
  -o, --out DIR     also write cert-chain.pem, key.pem and root-cert.pem there (mode 0600),
                    for debugging: this puts the workload's private key on disk
  --timeout DUR     how long to wait for each secret (default 15s)

Example:
  meshkey token --namespace foo --service-account sleep > sleep-token
  meshkey fetch-secret --token sleep-token --socket ${DEFAULT_SDS_SOCKET}`;

function pemOf(ds: DataSource | undefined): string {
  const s = ds?.specifier;
  if (!s) return "";
  if (s.case === "inlineBytes") return new TextDecoder().decode(s.value);
  if (s.case === "inlineString") return s.value;
  return "";
}

async function fetchSecret(socketPath: string, token: string, name: string, timeoutMs: number): Promise<Secret> {
  const sessions = new Http2SessionManager("http://localhost", {}, { createConnection: () => net.connect(socketPath) });
  const client = createClient(SecretDiscoveryService, createGrpcTransport({ baseUrl: "http://localhost", sessionManager: sessions }));
  const requests = createWritableIterable<MessageInitShape<typeof DiscoveryRequestSchema>>();
  const base: MessageInitShape<typeof DiscoveryRequestSchema> = { node: { id: `meshkey-fetch-secret~${process.pid}` }, typeUrl: SECRET_TYPE_URL, resourceNames: [name] };
  const headers = { [SDS_TOKEN_HEADER]: encodeBinaryHeader(new TextEncoder().encode(token)) };
  const done = new AbortController();
  const timer = setTimeout(() => done.abort(), timeoutMs);
  try {
    void requests.write(base).catch(() => {});
    for await (const res of client.streamSecrets(requests, { headers, signal: done.signal })) {
      const secret = res.resources.map((a) => anyUnpack(a, SecretSchema)).find((s) => s?.name === name);
      if (!secret) throw new UnreachableError(`the SDS answer for "${name}" holds no secret of that name`);
      // Like Envoy: ACK what it applied, then (unlike Envoy) go away.
      await requests.write({ ...base, versionInfo: res.versionInfo, responseNonce: res.nonce }).catch(() => {});
      return secret;
    }
    throw new UnreachableError(`the SDS stream for "${name}" on ${socketPath} ended without an answer`);
  } catch (err) {
    if (err instanceof UnreachableError) throw err;
    const ce = ConnectError.from(err);
    const why = terminalSafe(ce.rawMessage);
    if (done.signal.aborted && ce.code === Code.Canceled) throw new UnreachableError(`no "${name}" secret from ${socketPath} within ${timeoutMs} ms`);
    if (ce.code === Code.Unauthenticated || ce.code === Code.PermissionDenied) throw new UnreachableError(`the agent at ${socketPath} refused the token (${Code[ce.code]}): ${why}`);
    const syscall = /\b(ENOENT|ECONNREFUSED|EACCES|ENOTSOCK|ECONNRESET)\b/.test(ce.rawMessage);
    if (ce.code === Code.Unavailable || syscall) throw new UnreachableError(`cannot reach meshkey's SDS socket at ${socketPath} (--socket PATH): ${why}`);
    throw new UnreachableError(`SDS "${name}" from ${socketPath} failed (${Code[ce.code]}): ${why}`);
  } finally {
    clearTimeout(timer);
    requests.close();
    done.abort();
    sessions.abort();
  }
}

function parseTimeout(text: string): number {
  const m = /^(\d+)(ms|s|m)?$/.exec(text);
  if (!m) throw new UsageError(`--timeout: "${text}" is not a duration like 15s, 500ms or 1m`);
  return Number(m[1]) * (m[2] === "ms" ? 1 : m[2] === "m" ? 60_000 : 1000);
}

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const { values, positionals } = parseFlags(
        argv,
        { token: { type: "string" }, socket: { type: "string" }, out: { type: "string", short: "o" }, timeout: { type: "string", default: "15s" } },
        true,
      );
      if (positionals.length > 0) throw new UsageError(`fetch-secret takes no arguments (got "${positionals[0]}")`);
      if (!values.token) throw new UsageError("--token FILE is required (e.g. from meshkey token)");
      const timeoutMs = parseTimeout(values.timeout);
      const socketPath = values.socket ?? (!existsSync(DEFAULT_SDS_SOCKET) && existsSync(FALLBACK_SOCKET) ? FALLBACK_SOCKET : DEFAULT_SDS_SOCKET);
      let token: string;
      try {
        token = (await readFile(values.token, "utf8")).trim();
      } catch (err) {
        throw new UsageError(`--token: cannot read ${values.token}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      if (token === "") throw new UsageError(`--token: ${values.token} is empty`);

      const [workload, bundle] = await Promise.all([fetchSecret(socketPath, token, DEFAULT_SECRET_NAME, timeoutMs), fetchSecret(socketPath, token, ROOT_SECRET_NAME, timeoutMs)]);
      if (workload.type.case !== "tlsCertificate") throw new UnreachableError(`"default" from ${socketPath} is not a TLS certificate`);
      if (bundle.type.case !== "validationContext") throw new UnreachableError(`"ROOTCA" from ${socketPath} is not a validation context`);
      const chainPem = pemOf(workload.type.value.certificateChain);
      const rootPem = pemOf(bundle.type.value.trustedCa);
      const chain = splitPem(chainPem).map((p) => new X509Certificate(p));
      const roots = splitPem(rootPem).map((p) => new X509Certificate(p));
      const leaf = chain[0];
      if (!leaf) throw new UnreachableError(`"default" from ${socketPath} holds no certificate`);
      const now = new Date();
      const check = checkChain(chain, roots, now);
      const notAfter = new Date(leaf.validTo);
      const lines = [
        `SPIFFE ID:     ${terminalSafe(uriSans(leaf).join(", ") || "(none)")}`,
        `serial:        ${leaf.serialNumber}`,
        `not before:    ${new Date(leaf.validFrom).toISOString()}`,
        `not after:     ${notAfter.toISOString()} (${notAfter > now ? `expires in ${formatAge(notAfter.getTime() - now.getTime())}` : "EXPIRED"})`,
        `chain:         ${chain.length} certificate(s), ${check.ok ? "verifies against ROOTCA" : `does NOT verify against ROOTCA: ${check.reason}`}`,
        ...roots.map((r, i) => `ROOTCA${roots.length > 1 ? `[${i}]` : ""}:        ${terminalSafe(r.subject.replace(/\n/g, ", "))}, SHA256 Fingerprint=${fingerprintSha256(r.raw)}`),
      ];
      process.stdout.write(`${lines.join("\n")}\n`);
      if (values.out) {
        const keyPem = pemOf(workload.type.value.privateKey);
        await mkdir(values.out, { recursive: true, mode: 0o700 });
        for (const [file, text] of [["cert-chain.pem", chainPem], ["key.pem", keyPem], ["root-cert.pem", rootPem]] as const) {
          const path = join(values.out, file);
          await writeFile(path, text, { mode: 0o600 });
          await chmod(path, 0o600);
        }
        process.stderr.write(
          `meshkey fetch-secret: WARNING: wrote the workload's PRIVATE KEY to ${join(values.out, "key.pem")} (mode 0600); the agent never writes keys to disk — delete it when done\n`,
        );
      }
      return check.ok && leaf.validFrom !== "" && new Date(leaf.validFrom) <= now && notAfter > now ? 0 : 1;
    }),
};
