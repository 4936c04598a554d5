// `meshkey serve` flags and config file: defaults, precedence, and errors that name what is wrong.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveServeConfig } from "../../src/cli/serve-config.js";
import { parseDurationSeconds } from "../../src/cli/duration.js";

const dir = mkdtempSync(join(tmpdir(), "meshkey-cfg-"));
function configFile(text: string): string {
  const f = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, text);
  return f;
}

test("no flags gives the documented defaults", () => {
  const c = resolveServeConfig([]);
  assert.is(c.stateDir, ".meshkey");
  assert.is(c.trustDomain, "cluster.local");
  assert.is(c.sdsSocket, "/var/run/sds/uds_path");
  assert.is(c.sdsSocketExplicit, false);
  assert.is(c.xdsListen, "127.0.0.1:15010");
  assert.is(c.xdsTlsListen, "127.0.0.1:15011");
  assert.is(c.caListen, "127.0.0.1:15012");
  assert.is(c.adminListen, "127.0.0.1:15014");
  assert.is(c.certTtlSeconds, 86400);
  assert.is(c.maxCertTtlSeconds, 90 * 86400);
  assert.is(c.keyType, "ec-p256");
  assert.is(c.graceRatio, 0.5);
  assert.is(c.jwtAudience, "istio-ca");
  assert.is(c.caProvider, "builtin");
  assert.equal([c.sds, c.xds, c.ca], [true, true, true]);
});

test("a config file sets keys and flags win over it", () => {
  const f = configFile("trust-domain: example.org\ncert-ttl: 1h\nxds-listen: 127.0.0.1:16010\nsds: false\n");
  const c = resolveServeConfig(["--config", f, "--cert-ttl", "2h"]);
  assert.is(c.trustDomain, "example.org");
  assert.is(c.certTtlSeconds, 7200);
  assert.is(c.xdsListen, "127.0.0.1:16010");
  assert.is(c.sds, false);
});

test("--xds-tls-listen comes from the flag or the file; with --xds-listen on port 0 it defaults to port 0 too", () => {
  assert.is(resolveServeConfig(["--xds-tls-listen", "127.0.0.1:16011"]).xdsTlsListen, "127.0.0.1:16011");
  assert.is(resolveServeConfig(["--config", configFile("xds-tls-listen: 127.0.0.1:16111\n")]).xdsTlsListen, "127.0.0.1:16111");
  assert.is(resolveServeConfig(["--xds-listen", "127.0.0.1:0"]).xdsTlsListen, "127.0.0.1:0");
  assert.is(resolveServeConfig(["--xds-listen", "127.0.0.1:0", "--xds-tls-listen", "127.0.0.1:16011"]).xdsTlsListen, "127.0.0.1:16011");
  assert.is(resolveServeConfig(["--xds-listen", "127.0.0.1:16010"]).xdsTlsListen, "127.0.0.1:15011");
});

const invalid: Array<[string, string[], string | undefined, RegExp]> = [
  ["unknown key in the file", [], "trust-domian: x\n", /unknown key "trust-domian"/],
  ["bad enum in the file", [], "key-type: dsa\n", /key-type: must be one of ec-p256, rsa-2048/],
  ["bad listen address flag", ["--xds-listen", "nowhere"], undefined, /--xds-listen: "nowhere" is not HOST:PORT/],
  ["bad mTLS ADS listen address", ["--xds-tls-listen", "15011"], undefined, /--xds-tls-listen: "15011" is not HOST:PORT/],
  ["bad mTLS ADS listen address in the file", [], "xds-tls-listen: nowhere\n", /xds-tls-listen: must match pattern/],
  ["bad duration flag", ["--cert-ttl", "forever"], undefined, /--cert-ttl: "forever" is not a duration/],
  ["ttl above max", ["--cert-ttl", "100d"], undefined, /above --max-cert-ttl/],
  ["grace ratio out of range", ["--grace-ratio", "1.5"], undefined, /--grace-ratio: must be a number between 0 and 1/],
  ["istio provider without address", ["--ca-provider", "istio"], undefined, /--ca-address/],
  ["nothing enabled", ["--no-sds", "--no-xds", "--no-ca"], undefined, /nothing to run/],
  ["unknown flag", ["--frob"], undefined, /frob/],
];
for (const [name, argv, file, expected] of invalid) {
  test(`rejected: ${name}`, () => {
    const args = file === undefined ? argv : ["--config", configFile(file), ...argv];
    assert.throws(() => resolveServeConfig(args), expected);
  });
}

const goodDurations: Array<[string, number]> = [
  ["3600", 3600], ["45s", 45], ["30m", 1800], ["24h", 86400], ["90d", 7776000], ["1h30m", 5400], [" 2h ", 7200], ["500ms", 0.5], ["1.5h", 5400],
];
for (const [text, seconds] of goodDurations) {
  test(`duration "${text}" is ${seconds} s`, () => assert.is(parseDurationSeconds(text), seconds));
}
for (const bad of ["", "h", "1x", "-1h", "1h 30m", "soon"]) {
  test(`duration "${bad}" is refused with an error quoting it`, () => {
    assert.throws(() => parseDurationSeconds(bad, "--ttl"), (e: unknown) => (e as Error).message.includes(`"${bad}"`) && (e as Error).message.startsWith("--ttl"));
  });
}

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
