// The Node SDS client answers like Envoy: it ACKs a secret that loads and NACKs
// (error_detail) one that does not, keeping the last good certificate in use.
// The server here is a scripted SDS server on a temp socket, so the test can
// push a broken secret that the real agent never would.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { SecretDiscoveryService } from "../../gen/envoy/service/secret/v3/sds_pb.js";
import { DiscoveryResponseSchema, type DiscoveryRequest } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { SecretSchema } from "../../gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js";
import { createKeyAndCsr, openCertificateAuthority } from "../../src/ca/index.js";
import { createSdsClient } from "../../src/client/index.js";
import { startGrpcServer } from "../../src/net/index.js";

const enc = (s: string) => new TextEncoder().encode(s);

test("a secret that fails to load is NACKed with a reason and the last good one stays in use", async () => {
  const dir = mkdtempSync(join(tmpdir(), "meshkey-nack-"));
  const ca = await openCertificateAuthority({ stateDir: join(dir, "state"), trustDomain: "cluster.local" });
  const id = { namespace: "foo", serviceAccount: "sleep" };
  const issue = async () => {
    const { privateKeyPem, csrPem } = await createKeyAndCsr("ec-p256");
    const chain = await ca.sign(csrPem, id);
    return { key: privateKeyPem, chain: chain.slice(0, -1).join("\n") };
  };
  const good = await issue();
  const next = await issue();
  const tlsSecret = (name: string, chain: string, key: string): MessageInitShape<typeof SecretSchema> => ({
    name,
    type: {
      case: "tlsCertificate",
      value: { certificateChain: { specifier: { case: "inlineBytes", value: enc(chain) } }, privateKey: { specifier: { case: "inlineBytes", value: enc(key) } } },
    },
  });
  // default: version 1 good, version 2 a key that does not match its certificate, version 3 good again.
  const script = [tlsSecret("default", good.chain, good.key), tlsSecret("default", good.chain, next.key), tlsSecret("default", next.chain, next.key)];
  const seen: DiscoveryRequest[] = [];
  const routes = (router: ConnectRouter) =>
    router.service(SecretDiscoveryService, {
      async *streamSecrets(requests) {
        let step = 0;
        for await (const req of requests) {
          seen.push(req);
          const name = req.resourceNames[0];
          const answer = (version: number, secret: MessageInitShape<typeof SecretSchema>) =>
            create(DiscoveryResponseSchema, {
              versionInfo: String(version),
              nonce: `n${version}`,
              typeUrl: req.typeUrl,
              resources: [anyPack(SecretSchema, create(SecretSchema, secret))],
            });
          if (name === "ROOTCA") {
            if (!req.responseNonce) {
              yield answer(1, { name: "ROOTCA", type: { case: "validationContext", value: { trustedCa: { specifier: { case: "inlineBytes", value: enc(ca.rootCertPem) } } } } });
            }
            continue;
          }
          if (step < script.length && (req.responseNonce === "" || req.responseNonce === `n${step}`)) {
            step++;
            yield answer(step, script[step - 1]!);
          }
        }
      },
      fetchSecrets() {
        throw new Error("unused");
      },
      async *deltaSecrets() {},
    });
  const socketPath = join(dir, "uds_path");
  const server = await startGrpcServer({ routes, listen: { path: socketPath } });
  const tokenPath = join(dir, "token");
  writeFileSync(tokenPath, "not-checked-by-this-server");
  const client = createSdsClient({ socketPath, tokenPath });
  try {
    const first = await client.ready(10_000);
    const installed: string[] = [];
    const updated = new Promise<string>((resolve) =>
      client.onUpdate((m) => {
        installed.push(m.serialNumber);
        resolve(m.serialNumber);
      }),
    );
    const serial = await Promise.race([updated, new Promise<never>((_, r) => setTimeout(() => r(new Error("no update")), 5_000))]);
    assert.is.not(serial, first.serialNumber);
    const defaultRequests = () => seen.filter((r) => r.resourceNames[0] === "default");
    for (let i = 0; i < 100 && defaultRequests().length < 4; i++) await new Promise((r) => setTimeout(r, 20));
    const defaults = defaultRequests();
    // initial request, ACK of v1, NACK of v2, ACK of v3
    assert.is(defaults.length, 4, JSON.stringify(defaults.map((r) => [r.versionInfo, r.responseNonce, r.errorDetail?.message])));
    assert.is(defaults[1]!.responseNonce, "n1");
    assert.is(defaults[1]!.errorDetail, undefined);
    assert.is(defaults[2]!.responseNonce, "n2");
    assert.ok(defaults[2]!.errorDetail, "version 2 must be NACKed");
    assert.is(defaults[2]!.versionInfo, "1", "a NACK names the last version applied");
    assert.match(defaults[2]!.errorDetail!.message, /key values mismatch|private key|KEY/i);
    assert.is(defaults[3]!.responseNonce, "n3");
    assert.is(defaults[3]!.errorDetail, undefined);
    // The broken version 2 was never installed: the only change was to version 3.
    assert.equal(installed, [serial]);
  } finally {
    await client.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
