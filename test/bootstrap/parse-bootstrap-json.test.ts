// The bootstrap's strict parse with each Any payload parsed once per distinct JSON text:
// it must give exactly the message a whole-JSON fromJson gives, and refuse what fromJson refuses.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { equals, fromJson, toBinary, type JsonValue } from "@bufbuild/protobuf";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BootstrapSchema } from "../../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import { BOOTSTRAP_ROLES, BootstrapError, renderBootstrap } from "../../src/bootstrap/index.js";
import { parseBootstrapJson } from "../../src/bootstrap/parse-bootstrap-json.js";
import { envoyTypeRegistry } from "../../src/envoy/index.js";

const dir = mkdtempSync(join(tmpdir(), "meshkey-bootstrap-parse-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const wholeParse = (json: unknown) => fromJson(BootstrapSchema, json as JsonValue, { registry: envoyTypeRegistry });

for (const role of BOOTSTRAP_ROLES) {
  test(`${role}: the printed bootstrap's message is the whole-JSON parse, on a first and on a repeated payload`, () => {
    for (const [i, namespace] of ["first-ns", "first-ns", "other-ns"].entries()) {
      const r = renderBootstrap({ role, nodeId: `${role}~${i}`, namespace, serviceAccount: "sa" });
      const json = JSON.parse(r.text) as unknown;
      const expected = wholeParse(json);
      const fast = parseBootstrapJson(json);
      assert.ok(fast, "parsed");
      assert.ok(equals(BootstrapSchema, expected, fast!), `render ${i}: same message`);
      assert.equal(toBinary(BootstrapSchema, fast!), toBinary(BootstrapSchema, expected), `render ${i}: same bytes`);
      assert.ok(equals(BootstrapSchema, expected, r.bootstrap), `render ${i}: the returned message too`);
    }
  });
}

const tlsSocket = (extra: Record<string, unknown>) => ({
  name: "envoy.transport_sockets.tls",
  typed_config: {
    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    sni: "a.example",
    ...extra,
  },
});
const withSocket = (socket: unknown) => ({
  node: { id: "n" },
  static_resources: {
    clusters: [{ name: "c", connect_timeout: "1s", type: "STATIC", transport_socket: socket }],
  },
});

test("an Any payload with an unknown field is refused, the first time and after the same payload parsed fine elsewhere", () => {
  assert.ok(parseBootstrapJson(withSocket(tlsSocket({}))), "the good payload parses");
  for (let i = 0; i < 2; i++) {
    const bad = withSocket(tlsSocket({ snii: "x" }));
    assert.throws(() => wholeParse(bad));
    assert.is(parseBootstrapJson(bad), undefined);
  }
});

test("an Any naming a type outside the registry, or without @type, is refused", () => {
  assert.is(parseBootstrapJson(withSocket({ name: "t", typed_config: { "@type": "type.googleapis.com/no.such.Type", a: 1 } })), undefined);
  assert.is(parseBootstrapJson(withSocket({ name: "t", typed_config: { sni: "a" } })), undefined);
});

test("a template whose typed_config has an unknown field is rejected before printing, naming the path, every time", () => {
  writeFileSync(
    join(dir, "pilot.json.hbs"),
    JSON.stringify(withSocket(tlsSocket({ snii: "x" }))).replace('"id":"n"', '"id": {{json nodeId}} '),
  );
  for (let i = 0; i < 2; i++) {
    assert.throws(
      () => renderBootstrap({ role: "pilot", nodeId: `n${i}`, templateDir: dir }),
      (err: unknown) => err instanceof BootstrapError && /static_resources\.clusters\[0\]\.transport_socket\.typed_config.*snii/s.test((err as Error).message),
    );
  }
});

test.run();
