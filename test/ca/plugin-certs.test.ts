// A plugged-in CA (Istio `cacerts`): signs with the intermediate, returns leaf, chain, root.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { copyFileSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createKeyAndCsr, openCertificateAuthority, readCertificateInfo } from "../../src/ca/index.js";
import { openssl, tempDir, verifyChain } from "./helpers.js";

const dir = tempDir();
test.after(() => dir.remove());
const id = { namespace: "foo", serviceAccount: "sleep" };

function run(args: string[]): string {
  const r = openssl(args);
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.out}`);
  return r.out;
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** A root made by openssl, then an intermediate it signs, laid out as Istio's cacerts. */
function makeCacerts(name: string, opts: { ca?: boolean; days?: number; chainWithRoot?: boolean } = {}): string {
  const out = join(dir.path, name);
  mkdirSync(out);
  run(["req", "-x509", "-new", ...EC, "-keyout", join(out, "root-key.pem"), "-out", join(out, "root-cert.pem"), "-subj", "/O=Istio/CN=Root CA", "-days", "3650",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  run(["req", "-new", ...EC, "-keyout", join(out, "ca-key.pem"), "-out", join(out, "ca.csr"), "-subj", "/O=Istio/CN=Intermediate CA"]);
  const ext = join(out, "ext.cnf");
  writeFileSync(ext, [
    "[v3]",
    `basicConstraints=critical,CA:${opts.ca === false ? "FALSE" : "TRUE"}`,
    `keyUsage=critical,digitalSignature${opts.ca === false ? "" : ",keyCertSign,cRLSign"}`,
    "subjectKeyIdentifier=hash",
    "authorityKeyIdentifier=keyid",
    "",
  ].join("\n"));
  run(["x509", "-req", "-in", join(out, "ca.csr"), "-CA", join(out, "root-cert.pem"), "-CAkey", join(out, "root-key.pem"), "-CAcreateserial",
    "-days", String(opts.days ?? 730), "-extfile", ext, "-extensions", "v3", "-out", join(out, "ca-cert.pem")]);
  const chain = readFileSync(join(out, "ca-cert.pem"), "utf8") + (opts.chainWithRoot === false ? "" : readFileSync(join(out, "root-cert.pem"), "utf8"));
  writeFileSync(join(out, "cert-chain.pem"), chain);
  unlinkSync(join(out, "root-key.pem"));
  return out;
}


const normal = makeCacerts("normal");

for (const [what, layout] of [["cert-chain.pem = ca-cert + root (Istio's sample layout)", "normal"], ["cert-chain.pem = ca-cert only", "short"]] as const) {
  test(`chain is leaf, intermediate, root and openssl verifies it for client and server (${what})`, async () => {
    const certs = layout === "normal" ? normal : makeCacerts("short", { chainWithRoot: false });
    const ca = await openCertificateAuthority({ stateDir: join(dir.path, `state-${layout}`), trustDomain: "cluster.local", pluginCertsDir: certs });
    const { csrPem } = await createKeyAndCsr("ec-p256");
    const chain = await ca.sign(csrPem, id);
    assert.is(chain.length, 3);
    const fp = (pem: string) => readCertificateInfo(pem).fingerprintSha256;
    assert.is(fp(chain[1]!), fp(readFileSync(join(certs, "ca-cert.pem"), "utf8")), "second element: the intermediate");
    assert.is(fp(chain[2]!), fp(readFileSync(join(certs, "root-cert.pem"), "utf8")), "last element: the root");
    assert.is(ca.rootCertPem, chain[2]);
    assert.match(openssl(["x509", "-noout", "-issuer"], chain[0]).out, /CN ?= ?Intermediate CA/);
    for (const purpose of ["sslclient", "sslserver"] as const) {
      const r = verifyChain(dir.path, chain, purpose);
      assert.is(r.status, 0, r.out);
    }
  });
}

test("a leaf never outlives the intermediate that signs it", async () => {
  const certs = makeCacerts("short-lived", { days: 2 });
  const ca = await openCertificateAuthority({ stateDir: join(dir.path, "state-sl"), trustDomain: "cluster.local", pluginCertsDir: certs });
  const { csrPem } = await createKeyAndCsr("ec-p256");
  const [leaf] = await ca.sign(csrPem, id, 10 * 86400);
  const inter = readCertificateInfo(readFileSync(join(certs, "ca-cert.pem"), "utf8"));
  assert.is(readCertificateInfo(leaf!).notAfter.getTime(), inter.notAfter.getTime());
});

test("a signing certificate that is not a CA is rejected with a clear error", async () => {
  const certs = makeCacerts("not-ca", { ca: false });
  await openCertificateAuthority({ stateDir: join(dir.path, "state-nc"), trustDomain: "cluster.local", pluginCertsDir: certs }).then(
    () => assert.unreachable(),
    (err: Error) => assert.match(err.message, /ca-cert\.pem is not a CA certificate: its basicConstraints say CA:FALSE/),
  );
});

test("a ca-key.pem that does not match ca-cert.pem is rejected with a clear error", async () => {
  const certs = join(dir.path, "mismatch");
  mkdirSync(certs);
  for (const f of ["ca-cert.pem", "root-cert.pem", "cert-chain.pem"]) copyFileSync(join(normal, f), join(certs, f));
  run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", join(certs, "ca-key.pem")]);
  await openCertificateAuthority({ stateDir: join(dir.path, "state-mm"), trustDomain: "cluster.local", pluginCertsDir: certs }).then(
    () => assert.unreachable(),
    (err: Error) => assert.match(err.message, /ca-key\.pem does not match the public key of .*ca-cert\.pem/),
  );
});

test("an intermediate that the root did not sign is rejected", async () => {
  const other = makeCacerts("other");
  const certs = join(dir.path, "foreign-root");
  mkdirSync(certs);
  for (const f of ["ca-cert.pem", "ca-key.pem"]) copyFileSync(join(normal, f), join(certs, f));
  copyFileSync(join(other, "root-cert.pem"), join(certs, "root-cert.pem"));
  await openCertificateAuthority({ stateDir: join(dir.path, "state-fr"), trustDomain: "cluster.local", pluginCertsDir: certs }).then(
    () => assert.unreachable(),
    (err: Error) => assert.match(err.message, /chain does not verify: .*Intermediate CA.* is not signed by .*Root CA/),
  );
});

test("a missing cacerts file is named in the error", async () => {
  const certs = join(dir.path, "missing");
  mkdirSync(certs);
  copyFileSync(join(normal, "ca-cert.pem"), join(certs, "ca-cert.pem"));
  await openCertificateAuthority({ stateDir: join(dir.path, "state-mi"), trustDomain: "cluster.local", pluginCertsDir: certs }).then(
    () => assert.unreachable(),
    (err: Error) => assert.match(err.message, /missing[/\\]ca-key\.pem is missing/),
  );
});

test.run();
