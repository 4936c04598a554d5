// Hostile input to the parsers that face the outside: tokens, CSRs and mesh YAML.
// Each property holds for every generated case: the input is rejected with the
// part's own typed error (never another exception, never a crash), and nothing
// forged is ever accepted. Seeded and bounded; FUZZ_RUNS raises the count
// (bench/fuzz.bench.ts runs ≥ 100k).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import {
  AuthenticationError,
  InvalidRequestError,
  createJwtAuthenticator,
  createKeyAndCsr,
  openCertificateAuthority,
  openDevTokenIssuer,
  readCertificateInfo,
  type CertificateAuthority,
  type DevTokenIssuer,
  type TokenAuthenticator,
} from "../../src/ca/index.js";
import { MeshError, parseMesh } from "../../src/mesh/index.js";
import { csrArb, meshYamlArb, mutatedTokenArb, randomTokenArb } from "./support/arbitraries.js";

const equalArrays = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

const runs = Number(process.env.FUZZ_RUNS ?? 200);
const seed = Number(process.env.FUZZ_SEED ?? 20261123);
const dir = mkdtempSync(join(tmpdir(), "meshkey-fuzz-"));
let issuer: DevTokenIssuer;
let auth: TokenAuthenticator;
let ca: CertificateAuthority;
let validToken: string;
let validCsr: string;

test.before(async () => {
  issuer = await openDevTokenIssuer(dir);
  auth = createJwtAuthenticator({ jwks: { keys: issuer.jwks }, issuer: issuer.issuer });
  ca = await openCertificateAuthority({ stateDir: dir, trustDomain: "cluster.local" });
  validToken = await issuer.mint({ namespace: "foo", serviceAccount: "sleep" });
  validCsr = (await createKeyAndCsr("ec-p256")).csrPem;
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

test("random strings as tokens are rejected with AuthenticationError", async () => {
  await fc.assert(
    fc.asyncProperty(randomTokenArb, async (token) => {
      try {
        await auth.authenticate(token);
        return false;
      } catch (err) {
        return err instanceof AuthenticationError;
      }
    }),
    { numRuns: runs, seed },
  );
});

test("every mutation of a valid token is rejected or still names the same identity", async () => {
  await fc.assert(
    fc.asyncProperty(mutatedTokenArb(validToken), async (token) => {
      try {
        const who = await auth.authenticate(token);
        // base64url has slack in its last character: a change there can decode to the same bytes.
        return who.namespace === "foo" && who.serviceAccount === "sleep";
      } catch (err) {
        return err instanceof AuthenticationError;
      }
    }),
    { numRuns: runs, seed },
  );
});

test("random and mutated CSRs are rejected with InvalidRequestError, never signed with another identity", async () => {
  await fc.assert(
    fc.asyncProperty(
      csrArb(validCsr),
      async (csr) => {
        try {
          const chain = await ca.sign(csr, { namespace: "foo", serviceAccount: "sleep" });
          // Only a CSR whose signature still verifies may pass, and then the SAN is the caller's.
          return chain.length >= 2 && equalArrays(readCertificateInfo(chain[0]!).uriSans, ["spiffe://cluster.local/ns/foo/sa/sleep"]);
        } catch (err) {
          return err instanceof InvalidRequestError;
        }
      },
    ),
    { numRuns: runs, seed },
  );
});

test("random and mutated mesh YAML is either a valid model or a MeshError naming the file", () => {
  fc.assert(
    fc.property(meshYamlArb, (text) => {
      try {
        const model = parseMesh(text, "fuzz.yaml");
        return Array.isArray(model.services);
      } catch (err) {
        return err instanceof MeshError && err.message.startsWith("fuzz.yaml");
      }
    }),
    { numRuns: runs, seed },
  );
});

test("a valid token and CSR still work after the fuzzing (no state was poisoned)", async () => {
  const who = await auth.authenticate(validToken);
  assert.is(who.serviceAccount, "sleep");
  const chain = await ca.sign(validCsr, who);
  assert.ok(chain.length >= 2);
});

test.run();
