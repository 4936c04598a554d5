// Durations for --ttl / --cert-ttl / --max-cert-ttl.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { parseDuration } from "../../src/ca/index.js";

const good: Array<[string, number]> = [
  ["3600", 3600],
  ["45s", 45],
  ["30m", 1800],
  ["24h", 86400],
  ["90d", 7776000],
  ["1h30m", 5400],
  [" 2h ", 7200],
];
for (const [text, seconds] of good) {
  test(`"${text}" is ${seconds} s`, () => assert.is(parseDuration(text), seconds));
}

for (const bad of ["", "h", "1x", "1.5h", "-1h", "1h 30m", "soon"]) {
  test(`"${bad}" is refused with an error quoting it`, () => {
    assert.throws(() => parseDuration(bad), (e: unknown) => (e as Error).message.includes(`"${bad}"`));
  });
}

test.run();
