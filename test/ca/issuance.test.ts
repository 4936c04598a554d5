// Issuance: what the CA puts in a leaf, checked by OpenSSL and @peculiar/x509.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as crypto from "node:crypto";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import {
  InvalidRequestError,
  createKeyAndCsr,
  openCertificateAuthority,
  readCertificateInfo,
  type CertificateAuthority,
  type KeyType,
} from "../../src/ca/index.js";
import { oid as derOid, sequence as derSequence, tlv, toPem } from "../../src/ca/der.js";
import { buildCsr, signingKeyOf } from "../../src/ca/x509.js";
import { openssl, tempDir, verifyChain, writeIn } from "./helpers.js";

const dir = tempDir();
const cas = new Map<KeyType, CertificateAuthority>();
async function caOf(keyType: KeyType): Promise<CertificateAuthority> {
  let ca = cas.get(keyType);
  if (!ca) {
    ca = await openCertificateAuthority({ stateDir: `${dir.path}/state-${keyType}`, trustDomain: "example.org", keyType });
    cas.set(keyType, ca);
  }
  return ca;
}
const id = { namespace: "foo", serviceAccount: "httpbin" };
const leafOf = (chain: string[]) => new x509.X509Certificate(chain[0]!);

test.after(() => dir.remove());

for (const rootType of ["ec-p256", "rsa-2048"] as const) {
  for (const leafType of ["ec-p256", "rsa-2048"] as const) {
    test(`openssl verifies a ${leafType} leaf from a ${rootType} root for client and server TLS (-x509_strict)`, async () => {
      const ca = await caOf(rootType);
      const { csrPem } = await createKeyAndCsr(leafType);
      const chain = await ca.sign(csrPem, id);
      assert.is(chain.length, 2);
      assert.is(chain[1], ca.rootCertPem);
      for (const purpose of ["sslclient", "sslserver"] as const) {
        const r = verifyChain(dir.path, chain, purpose);
        assert.is(r.status, 0, r.out);
        assert.match(r.out, /v-leaf\.pem: OK/);
      }
    });
  }
}

test("openssl reads the SPIFFE URI SAN (critical), key usages, EKU, CA:FALSE and an empty subject", async () => {
  const ca = await caOf("ec-p256");
  const { csrPem } = await createKeyAndCsr("ec-p256");
  const [leaf] = await ca.sign(csrPem, id);
  const text = openssl(["x509", "-noout", "-text"], leaf).out;
  assert.match(text, /X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/example\.org\/ns\/foo\/sa\/httpbin\s*\n/);
  assert.match(text, /X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment\s*\n/);
  assert.match(text, /X509v3 Extended Key Usage:\s*\n\s+TLS Web Server Authentication, TLS Web Client Authentication/);
  assert.match(text, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
  assert.match(text, /Subject: *\n/);
  assert.match(text, /Issuer: O = example\.org/);
  assert.match(text, /X509v3 Subject Key Identifier/);
  assert.match(text, /X509v3 Authority Key Identifier/);
});

test("@peculiar/x509 agrees on every field: serial, validity, SAN, usages, key identifiers, public key", async () => {
  const ca = await caOf("ec-p256");
  const { csrPem, privateKeyPem } = await createKeyAndCsr("ec-p256");
  const before = Date.now();
  const chain = await ca.sign(csrPem, id, 3600);
  const leaf = leafOf(chain);
  const root = new x509.X509Certificate(ca.rootCertPem);
  const info = readCertificateInfo(chain[0]!);
  assert.is(leaf.serialNumber.toLowerCase(), info.serialHex);
  assert.is(leaf.notBefore.getTime(), info.notBefore.getTime());
  assert.is(leaf.notAfter.getTime(), info.notAfter.getTime());
  assert.is(leaf.subject, "");
  assert.is(leaf.issuer, root.subject);
  const san = leaf.getExtension(x509.SubjectAlternativeNameExtension)!;
  assert.ok(san.critical);
  assert.equal(san.names.toJSON(), [{ type: "url", value: "spiffe://example.org/ns/foo/sa/httpbin" }]);
  const ku = leaf.getExtension(x509.KeyUsagesExtension)!;
  assert.ok(ku.critical);
  assert.is(ku.usages, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
  assert.equal([...leaf.getExtension(x509.ExtendedKeyUsageExtension)!.usages].map(String), [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);
  const bc = leaf.getExtension(x509.BasicConstraintsExtension)!;
  assert.is(bc.ca, false);
  assert.ok(bc.critical);
  const rootSki = root.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
  assert.is(leaf.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId, rootSki);
  const spki = crypto.createPublicKey(privateKeyPem).export({ format: "der", type: "spki" });
  const expectedSki = await x509.SubjectKeyIdentifierExtension.create(new x509.PublicKey(spki));
  assert.is(leaf.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId, expectedSki.keyId);
  assert.ok(Buffer.from(leaf.publicKey.rawData).equals(spki), "leaf carries the CSR's public key");
  assert.ok(await leaf.verify({ publicKey: root.publicKey, signatureOnly: true }), "signed by the root");
  // validity: 3600 s from now, backdated by 5 minutes
  assert.ok(Math.abs(leaf.notAfter.getTime() - (before + 3600_000)) < 3_000);
  assert.ok(Math.abs(leaf.notAfter.getTime() - leaf.notBefore.getTime() - (3600 + 300) * 1000) < 1_000);
});

test("the SAN and subject come from the identity, never from the CSR", async () => {
  const ca = await caOf("ec-p256");
  const key = writeIn(dir.path, "forged-key.pem", crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey.export({ format: "pem", type: "pkcs8" }).toString());
  const forged = openssl(["req", "-new", "-key", key, "-subj", "/CN=admin/O=evil", "-addext", "subjectAltName=URI:spiffe://example.org/ns/kube-system/sa/admin,DNS:evil.example"]);
  assert.is(forged.status, 0, forged.out);
  assert.match(openssl(["req", "-noout", "-text"], forged.out).out, /spiffe:\/\/example\.org\/ns\/kube-system\/sa\/admin/);
  const [leafPem] = await ca.sign(forged.out, id);
  const text = openssl(["x509", "-noout", "-text"], leafPem).out;
  assert.not.match(text, /admin|evil/);
  assert.equal(readCertificateInfo(leafPem!).uriSans, ["spiffe://example.org/ns/foo/sa/httpbin"]);
});

// Whatever an openssl-made CSR asks for, the leaf has exactly the CA's fields.
const forgedCsrs: Array<[string, string[]]> = [
  ["a URI SAN of another identity", ["-addext", "subjectAltName=URI:spiffe://example.org/ns/kube-system/sa/admin"]],
  ["a second URI SAN beside the real one", ["-addext", "subjectAltName=URI:spiffe://example.org/ns/foo/sa/httpbin,URI:spiffe://example.org/ns/kube-system/sa/admin"]],
  ["DNS, IP and email SANs", ["-addext", "subjectAltName=DNS:admin.kube-system.svc,IP:10.0.0.1,email:admin@example.org"]],
  ["a subject naming another identity", ["-subj", "/CN=spiffe:\/\/example.org\/ns\/kube-system\/sa\/admin/O=system:masters"]],
  ["CA:TRUE and keyCertSign", ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]],
  ["code-signing EKU", ["-addext", "extendedKeyUsage=codeSigning,OCSPSigning"]],
  ["name constraints", ["-addext", "nameConstraints=permitted;URI:.example.org"]],
  ["an unknown critical extension", ["-addext", "1.3.6.1.4.1.99999.1=critical,ASN1:UTF8String:evil"]],
];
const CA_LEAF_EXTENSIONS = ["2.5.29.14", "2.5.29.15", "2.5.29.17", "2.5.29.19", "2.5.29.35", "2.5.29.37"];
for (const [what, args] of forgedCsrs) {
  test(`a CSR with ${what} gets a leaf with only the token's SPIFFE ID, an empty subject and the CA's own extensions`, async () => {
    const ca = await caOf("ec-p256");
    const key = writeIn(dir.path, "forged.pem", crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey.export({ format: "pem", type: "pkcs8" }).toString());
    const csr = openssl(["req", "-new", "-key", key, ...(args.includes("-subj") ? [] : ["-subj", "/CN=x"]), ...args]);
    assert.is(csr.status, 0, csr.out);
    const [leafPem] = await ca.sign(csr.out, id);
    const leaf = new x509.X509Certificate(leafPem!);
    assert.is(leaf.subject, "");
    assert.equal(readCertificateInfo(leafPem!).uriSans, ["spiffe://example.org/ns/foo/sa/httpbin"]);
    const san = leaf.getExtension(x509.SubjectAlternativeNameExtension)!;
    assert.equal(Array.from(san.names.items, (n) => [n.type, n.value]), [["url", "spiffe://example.org/ns/foo/sa/httpbin"]]);
    assert.equal(Array.from(leaf.extensions, (e) => e.type).sort(), CA_LEAF_EXTENSIONS);
    assert.is(leaf.getExtension(x509.BasicConstraintsExtension)!.ca, false);
    const text = openssl(["x509", "-noout", "-text"], leafPem).out;
    assert.match(text, /Extended Key Usage: *\n *TLS Web Server Authentication, TLS Web Client Authentication\n/);
    assert.not.match(text, /admin|evil|Certificate Sign|Code Signing|Name Constraints|10\.0\.0\.1/);
  });
}

// Names that could smuggle another identity into the SPIFFE ID (spiffe://td/ns/<ns>/sa/<sa>).
const trickNames: Array<[string, { namespace: string; serviceAccount: string }]> = [
  ["a slash in the namespace", { namespace: "kube-system/sa/admin", serviceAccount: "x" }],
  ["a slash in the service account", { namespace: "foo", serviceAccount: "x/../../kube-system/sa/admin" }],
  ["a percent-encoded slash", { namespace: "kube-system%2Fsa%2Fadmin", serviceAccount: "x" }],
  ["a dot-dot service account", { namespace: "foo", serviceAccount: ".." }],
  ["a dotted namespace", { namespace: "kube-system.sa", serviceAccount: "admin" }],
  ["upper case (another name to a case-insensitive peer)", { namespace: "Kube-System", serviceAccount: "admin" }],
  ["a Cyrillic look-alike", { namespace: "kube-sуstem", serviceAccount: "admin" }],
  ["a query or fragment", { namespace: "foo", serviceAccount: "admin?x=1#y" }],
  ["a colon", { namespace: "foo", serviceAccount: "system:admin" }],
  ["a NUL byte", { namespace: "foo", serviceAccount: "admin\u0000x" }],
  ["whitespace", { namespace: "foo ", serviceAccount: "admin" }],
  ["an empty service account", { namespace: "foo", serviceAccount: "" }],
  ["a 64-character namespace", { namespace: "a".repeat(64), serviceAccount: "admin" }],
];
for (const [what, bad] of trickNames) {
  test(`an identity with ${what} gets no certificate (InvalidRequestError naming the bad part)`, async () => {
    const ca = await caOf("ec-p256");
    const { csrPem } = await createKeyAndCsr("ec-p256");
    const err = await ca.sign(csrPem, bad).then(() => undefined, (e: Error) => e);
    assert.instance(err, InvalidRequestError);
    assert.match(err!.message, /invalid (namespace|service account)/);
  });
}

const badCsrs: Array<[string, () => Promise<string>, RegExp]> = [
  [
    "a CSR whose signature does not verify",
    async () => {
      const { csrPem } = await createKeyAndCsr("ec-p256");
      const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ""), "base64");
      der[der.length - 5]! ^= 0x01;
      return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    },
    /bad CSR: .*(signature|DER|tag)/,
  ],
  [
    "a CSR signed by another key than the one it carries",
    async () => {
      const { csrPem } = await createKeyAndCsr("ec-p256");
      const other = await createKeyAndCsr("ec-p256");
      const a = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ""), "base64");
      const b = Buffer.from(other.csrPem.replace(/-----[^-]+-----|\s/g, ""), "base64");
      // same layout: swap the public keys (91-byte SPKI of P-256) between the two requests
      const spkiA = a.indexOf(Buffer.from("3059301306072a8648ce3d0201", "hex"));
      const spkiB = b.indexOf(Buffer.from("3059301306072a8648ce3d0201", "hex"));
      b.subarray(spkiB, spkiB + 91).copy(a, spkiA);
      return `-----BEGIN CERTIFICATE REQUEST-----\n${a.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    },
    /bad CSR: CSR signature does not verify/,
  ],
  ["an empty CSR", async () => "", /bad CSR: empty CSR/],
  ["text that is not PEM", async () => "hello", /bad CSR: no "CERTIFICATE REQUEST" PEM block/],
  ["a PEM certificate instead of a CSR", async () => (await caOf("ec-p256")).rootCertPem, /bad CSR: no "CERTIFICATE REQUEST"/],
  ["a CSR of random bytes", async () => `-----BEGIN CERTIFICATE REQUEST-----\n${crypto.randomBytes(200).toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`, /bad CSR/],
  [
    "a CSR with a 1024-bit RSA key",
    async () => {
      const key = writeIn(dir.path, "rsa1024.pem", crypto.generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ format: "pem", type: "pkcs8" }).toString());
      return openssl(["req", "-new", "-key", key, "-subj", "/CN=x"]).out;
    },
    /bad CSR: unsupported public key \(rsa 1024 bits\)/,
  ],
  [
    "an openssl CSR whose P-256 key has explicit curve parameters (ecparam -param_enc explicit)",
    async () => {
      const key = `${dir.path}/explicit-p256.pem`;
      const gen = openssl(["ecparam", "-name", "prime256v1", "-genkey", "-param_enc", "explicit", "-out", key]);
      assert.is(gen.status, 0, gen.out);
      const csr = openssl(["req", "-new", "-key", key, "-subj", "/CN=x"]);
      assert.match(openssl(["req", "-noout", "-text"], csr.out).out, /Field Type: prime-field/, "openssl wrote explicit parameters");
      return csr.out;
    },
    /bad CSR: EC public key with explicit curve parameters; only named curves are accepted \(RFC 5480\)/,
  ],
  [
    "an openssl CSR with an RSA key of public exponent 3 (genrsa -3)",
    async () => {
      const key = `${dir.path}/rsa-e3.pem`;
      const gen = openssl(["genrsa", "-3", "-out", key, "2048"]);
      assert.is(gen.status, 0, gen.out);
      const csr = openssl(["req", "-new", "-key", key, "-subj", "/CN=x"]);
      assert.match(openssl(["req", "-noout", "-text"], csr.out).out, /Exponent: 3 \(0x3\)/);
      return csr.out;
    },
    /bad CSR: unsupported RSA public exponent 3; only e = 65537 is accepted/,
  ],
  [
    "a CSR whose RSA key lacks the NULL parameters (RFC 3279)",
    async () => {
      const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
      const pkcs1 = publicKey.export({ format: "der", type: "pkcs1" });
      const bits = Buffer.concat([Buffer.from([0]), pkcs1]);
      const spki = derSequence(derSequence(derOid("1.2.840.113549.1.1.1")), tlv(0x03, bits));
      const pem = toPem("CERTIFICATE REQUEST", buildCsr(signingKeyOf(privateKey), spki));
      assert.is(openssl(["req", "-verify", "-noout"], pem).status, 0, "openssl reads it");
      return pem;
    },
    /bad CSR: RSA public key without NULL parameters/,
  ],
];
for (const [what, make, message] of badCsrs) {
  test(`${what} is rejected with InvalidRequestError`, async () => {
    const ca = await caOf("ec-p256");
    const csr = await make();
    try {
      await ca.sign(csr, id);
      assert.unreachable("signed a bad CSR");
    } catch (err) {
      assert.instance(err, InvalidRequestError);
      assert.match((err as Error).message, message);
    }
  });
}

test("a TTL above the maximum is rejected with InvalidRequestError naming both", async () => {
  const ca = await openCertificateAuthority({ stateDir: `${dir.path}/ttl`, trustDomain: "example.org", certTtlSeconds: 600, maxCertTtlSeconds: 3600 });
  const { csrPem } = await createKeyAndCsr("ec-p256");
  try {
    await ca.sign(csrPem, id, 3601);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, InvalidRequestError);
    assert.match((err as Error).message, /3601s is above the maximum of 3600s/);
  }
  const ok = readCertificateInfo((await ca.sign(csrPem, id, 3600))[0]!);
  assert.ok(Math.abs(ok.notAfter.getTime() - Date.now() - 3600_000) < 3_000);
  const dflt = readCertificateInfo((await ca.sign(csrPem, id))[0]!);
  assert.ok(Math.abs(dflt.notAfter.getTime() - Date.now() - 600_000) < 3_000, "no TTL asked: the default --cert-ttl");
  assert.ok(Math.abs(dflt.notAfter.getTime() - dflt.notBefore.getTime() - 900_000) < 1_000, "backdated 5 minutes");
});

test("a short TTL backdates notBefore by at most half the TTL", async () => {
  const ca = await caOf("ec-p256");
  const { csrPem } = await createKeyAndCsr("ec-p256");
  const info = readCertificateInfo((await ca.sign(csrPem, id, 60))[0]!);
  assert.is(info.notAfter.getTime() - info.notBefore.getTime(), 90_000);
});

test("serials are 128-bit, positive and distinct", async () => {
  const ca = await caOf("ec-p256");
  const { csrPem } = await createKeyAndCsr("ec-p256");
  const seen = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const [leaf] = await ca.sign(csrPem, id);
    const cert = new crypto.X509Certificate(leaf!);
    const serial = BigInt(`0x${cert.serialNumber}`);
    assert.ok(serial > 0n);
    assert.ok(serial >= 1n << 120n && serial < 1n << 128n, cert.serialNumber);
    seen.add(cert.serialNumber);
  }
  assert.is(seen.size, 50);
});

test("identities that cannot form a SPIFFE ID are rejected", async () => {
  const ca = await caOf("ec-p256");
  const { csrPem } = await createKeyAndCsr("ec-p256");
  for (const bad of [{ namespace: "foo/sa/x", serviceAccount: "a" }, { namespace: "", serviceAccount: "a" }, { namespace: "Foo", serviceAccount: "a" }]) {
    await ca.sign(csrPem, bad).then(
      () => assert.unreachable(`signed ${JSON.stringify(bad)}`),
      (err: Error) => assert.instance(err, InvalidRequestError),
    );
  }
});

for (const keyType of ["ec-p256", "rsa-2048"] as const) {
  test(`createKeyAndCsr(${keyType}) gives a CSR openssl verifies, for the returned key, with an empty subject`, async () => {
    const { privateKeyPem, csrPem } = await createKeyAndCsr(keyType);
    const r = openssl(["req", "-verify", "-noout", "-text"], csrPem);
    assert.is(r.status, 0, r.out);
    assert.match(r.out, /verify OK/);
    assert.match(r.out, keyType === "ec-p256" ? /prime256v1|P-256/ : /Public-Key: \(2048 bit\)/);
    assert.match(r.out, /Subject: *\n/);
    const check = openssl(["pkey", "-check", "-noout"], privateKeyPem);
    assert.is(check.status, 0, check.out);
    const csrKey = new x509.Pkcs10CertificateRequest(csrPem).publicKey.rawData;
    const spki = crypto.createPublicKey(privateKeyPem).export({ format: "der", type: "spki" });
    assert.ok(Buffer.from(csrKey).equals(spki));
  });
}

for (const [what, genArgs] of [
  ["EC P-384", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]],
  ["RSA 3072", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"]],
  ["Ed25519", ["-algorithm", "ED25519"]],
] as const) {
  test(`an openssl-made CSR with an ${what} key is signed and the leaf carries that key`, async () => {
    const ca = await caOf("ec-p256");
    const keyFile = `${dir.path}/k-${what.replace(/\W/g, "")}.pem`;
    const gen = openssl(["genpkey", ...genArgs, "-out", keyFile]);
    assert.is(gen.status, 0, gen.out);
    const csr = openssl(["req", "-new", "-key", keyFile, "-subj", "/CN=w"]);
    assert.is(csr.status, 0, csr.out);
    const chain = await ca.sign(csr.out, id);
    const fromCsr = new x509.Pkcs10CertificateRequest(csr.out).publicKey.rawData;
    assert.ok(Buffer.from(leafOf(chain).publicKey.rawData).equals(Buffer.from(fromCsr)));
    assert.is(verifyChain(dir.path, chain, "sslclient").status, 0);
  });
}

test("a CSR whose P-256 key is a compressed point is signed and the leaf carries that key", async () => {
  const ca = await caOf("ec-p256");
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const jwk = publicKey.export({ format: "jwk" });
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, "base64url"), Buffer.from(jwk.y!, "base64url")]);
  const compressed = crypto.ECDH.convertKey(point, "prime256v1", undefined, undefined, "compressed") as Buffer;
  const spki = Buffer.concat([Buffer.from("3039301306072a8648ce3d020106082a8648ce3d030107032200", "hex"), compressed]);
  const csrPem = toPem("CERTIFICATE REQUEST", buildCsr(signingKeyOf(privateKey), spki));
  assert.is(openssl(["req", "-verify", "-noout"], csrPem).status, 0);
  const chain = await ca.sign(csrPem, id);
  assert.ok(Buffer.from(leafOf(chain).publicKey.rawData).equals(spki));
  assert.is(verifyChain(dir.path, chain, "sslserver").status, 0);
});

test("readCertificateInfo matches openssl's serial and SHA-256 fingerprint", async () => {
  const ca = await caOf("ec-p256");
  const { csrPem } = await createKeyAndCsr("ec-p256");
  const [leaf] = await ca.sign(csrPem, id);
  const info = readCertificateInfo(leaf!);
  const out = openssl(["x509", "-noout", "-serial", "-fingerprint", "-sha256", "-enddate"], leaf).out;
  assert.is(/serial=([0-9A-F]+)/.exec(out)![1]!.toLowerCase().replace(/^0+/, ""), info.serialHex.replace(/^0+/, ""));
  assert.is(/Fingerprint=([0-9A-F:]+)/.exec(out)![1]!, info.fingerprintSha256);
  assert.is(new Date(/notAfter=(.*)/.exec(out)![1]!).getTime(), info.notAfter.getTime());
});

test.run();
