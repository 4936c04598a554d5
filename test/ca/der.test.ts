// The DER layer: round trips (fast-check) and rejection of malformed input.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fc from "fast-check";
import { DerError, TAG, children, content, fromPem, octetString, oid, readNode, readOid, readTime, sequence, time, toPem, unsignedInteger } from "../../src/ca/der.js";

test("any content length round-trips through a TLV (short and long length forms)", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 70_000 }), (n) => {
      const body = Buffer.alloc(n, 7);
      const der = octetString(body);
      const node = readNode(der);
      assert.is(node.tag, TAG.octetString);
      assert.is(node.end, der.length);
      assert.ok(content(der, node).equals(body));
    }),
    { numRuns: 200 },
  );
});

test("OIDs round-trip, including large arcs", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 39 }), fc.array(fc.integer({ min: 0, max: 2 ** 32 }), { maxLength: 8 }), (a, b, rest) => {
      const dotted = [a, b, ...rest].join(".");
      const der = oid(dotted);
      assert.is(readOid(der, readNode(der)), dotted);
    }),
  );
  assert.is(oid("1.2.840.10045.4.3.2").toString("hex"), "06082a8648ce3d040302");
});

test("times round-trip to the second, UTCTime before 2050 and GeneralizedTime after", () => {
  fc.assert(
    fc.property(fc.integer({ min: Date.UTC(1950, 0, 1) / 1000, max: Date.UTC(9999, 11, 31) / 1000 }), (s) => {
      const d = new Date(s * 1000);
      const der = time(d);
      const node = readNode(der);
      assert.is(node.tag, d.getUTCFullYear() < 2050 ? TAG.utcTime : TAG.generalizedTime);
      assert.is(readTime(der, node).getTime(), d.getTime());
    }),
  );
});

test("integers are minimal and positive (sign byte only when the top bit is set)", () => {
  assert.is(unsignedInteger(Buffer.from([0, 0, 5])).toString("hex"), "020105");
  assert.is(unsignedInteger(Buffer.from([0x80])).toString("hex"), "02020080");
  assert.is(unsignedInteger(Buffer.from([])).toString("hex"), "020100");
});

test("PEM round-trips and a sequence's children are found", () => {
  const der = sequence(octetString(Buffer.from("a")), oid("2.5.29.17"));
  const back = fromPem(toPem("THING", der), "THING");
  assert.ok(back.equals(der));
  assert.equal(children(back, readNode(back)).map((c) => c.tag), [TAG.octetString, TAG.oid]);
});

const malformed: Array<[string, string, RegExp]> = [
  ["a truncated element", "3005020101", /overruns/],
  ["a length longer than the input", "0482ffff00", /overruns/],
  ["a non-minimal long length", "04810100", /non-minimal/],
  ["an indefinite length", "3080", /unsupported length/],
  ["a lone tag byte", "30", /truncated/],
];
for (const [what, hex, message] of malformed) {
  test(`${what} is a DerError`, () => {
    assert.throws(() => readNode(Buffer.from(hex, "hex")), (e: unknown) => e instanceof DerError && message.test((e as Error).message));
  });
}

test.run();
