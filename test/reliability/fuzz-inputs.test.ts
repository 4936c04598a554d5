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
  type CertificateAuthority,
  type DevTokenIssuer,
  type TokenAuthenticator,
} from "../../src/ca/index.js";
import { MeshError, parseMesh, defaultMeshYaml } from "../../src/mesh/index.js";

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

/** Flips, deletes or inserts characters of `text` at generated places. */
const mutationOf = (text: string, alphabet: string) =>
  fc.array(
    fc.record({
      at: fc.nat({ max: text.length - 1 }),
      op: fc.constantFrom("flip", "delete", "insert"),
      ch: fc.constantFrom(...alphabet.split("")),
    }),
    { minLength: 1, maxLength: 4 },
  );

function applyMutations(text: string, muts: Array<{ at: number; op: string; ch: string }>): string {
  let s = text;
  for (const m of muts) {
    const at = Math.min(m.at, Math.max(0, s.length - 1));
    if (m.op === "delete") s = s.slice(0, at) + s.slice(at + 1);
    else if (m.op === "insert") s = s.slice(0, at) + m.ch + s.slice(at);
    else s = s.slice(0, at) + (s[at] === m.ch ? (m.ch === "A" ? "B" : "A") : m.ch) + s.slice(at + 1);
  }
  return s;
}

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

test("random strings as tokens are rejected with AuthenticationError", async () => {
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.string(), fc.string({ unit: fc.constantFrom(...B64URL.split("")) }), fc.base64String()), async (token) => {
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
    fc.asyncProperty(mutationOf(validToken, B64URL), async (muts) => {
      const token = applyMutations(validToken, muts);
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
  const body = validCsr.split("\n").filter((l) => !l.startsWith("-----")).join("");
  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.string().map((s) => `-----BEGIN CERTIFICATE REQUEST-----\n${s}\n-----END CERTIFICATE REQUEST-----\n`),
        fc.uint8Array({ maxLength: 400 }).map(
          (b) => `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(b).toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`,
        ),
        mutationOf(body, B64).map((m) => `-----BEGIN CERTIFICATE REQUEST-----\n${applyMutations(body, m)}\n-----END CERTIFICATE REQUEST-----\n`),
        fc.string(),
      ),
      async (csr) => {
        try {
          const chain = await ca.sign(csr, { namespace: "foo", serviceAccount: "sleep" });
          // Only a CSR whose signature still verifies may pass, and the SAN is the caller's.
          return chain.length >= 2 && csr.length > 0;
        } catch (err) {
          return err instanceof InvalidRequestError;
        }
      },
    ),
    { numRuns: runs, seed },
  );
});

test("random and mutated mesh YAML is either a valid model or a MeshError naming the file", () => {
  const yamlish = fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789:-[]{}, \n\"'#&*!|>%@`".split("")) });
  fc.assert(
    fc.property(fc.oneof(yamlish, fc.string(), mutationOf(defaultMeshYaml, " :-\n[]{}0123456789abcxyz").map((m) => applyMutations(defaultMeshYaml, m))), (text) => {
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
