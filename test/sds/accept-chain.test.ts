// What the node agent accepts from a CA before a workload gets it: one case per rule.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { acceptChain } from "../../src/sds/accept-chain.js";
import { CaProviderError } from "../../src/sds/index.js";
import type { CertificateInfo } from "../../src/ca/index.js";

const ID = "spiffe://cluster.local/ns/foo/sa/httpbin";

/** Reads "LEAF <uri SAN>,<uri SAN>…"; anything else is unreadable. */
function readInfo(pem: string): CertificateInfo {
  const m = /^LEAF ?(.*)$/.exec(pem);
  if (!m) throw new Error("not a certificate");
  return {
    serialHex: "01",
    notBefore: new Date(0),
    notAfter: new Date(1),
    uriSans: m[1] ? m[1].split(",") : [],
    fingerprintSha256: "00",
  };
}

// [what a user sees, chain from the CA, error message, or the accepted chainPem and rootPem]
const cases: Array<[string, string[], RegExp | { chainPem: string; rootPem: string }]> = [
  ["a chain for the identity is accepted, leaf to root, one PEM a block", [`LEAF ${ID}`, "INTERMEDIATE", "ROOT"], { chainPem: `LEAF ${ID}\nINTERMEDIATE\nROOT\n`, rootPem: "ROOT\n" }],
  ["blank entries and surrounding whitespace are dropped", ["", `  LEAF ${ID}\n`, "\n", " ROOT "], { chainPem: `LEAF ${ID}\nROOT\n`, rootPem: "ROOT\n" }],
  ["a lone leaf is its own trust bundle", [`LEAF ${ID}`], { chainPem: `LEAF ${ID}\n`, rootPem: `LEAF ${ID}\n` }],
  ["one of several URI SANs is enough", [`LEAF spiffe://cluster.local/ns/x/sa/y,${ID}`], { chainPem: `LEAF spiffe://cluster.local/ns/x/sa/y,${ID}\n`, rootPem: `LEAF spiffe://cluster.local/ns/x/sa/y,${ID}\n` }],
  ["an empty chain is refused", [], /^CA returned an empty certificate chain$/],
  ["a chain of blank strings is empty", ["", "  \n"], /^CA returned an empty certificate chain$/],
  ["an unreadable leaf is refused, saying why", ["garbage", "ROOT"], /^CA returned an unreadable certificate: not a certificate$/],
  ["a certificate for another identity is refused, naming both", ["LEAF spiffe://cluster.local/ns/bar/sa/sleep"], /for spiffe:\/\/cluster.local\/ns\/bar\/sa\/sleep, expected spiffe:\/\/cluster.local\/ns\/foo\/sa\/httpbin$/],
  ["a certificate with no URI SAN is refused", ["LEAF"], /^CA returned a certificate for no URI SAN, expected spiffe/],
];

for (const [name, chain, expected] of cases) {
  test(name, () => {
    if (expected instanceof RegExp) {
      try {
        acceptChain(chain, ID, readInfo);
        assert.unreachable("accepted");
      } catch (err) {
        assert.instance(err, CaProviderError);
        assert.is((err as CaProviderError).kind, "invalid");
        assert.match((err as Error).message, expected);
      }
      return;
    }
    const accepted = acceptChain(chain, ID, readInfo);
    assert.is(accepted.chainPem, expected.chainPem);
    assert.is(accepted.rootPem, expected.rootPem);
    assert.ok(accepted.info.uriSans.includes(ID));
  });
}

test.run();
