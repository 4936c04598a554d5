// The serve flags as users read them: --help and the README's table list every flag serve
// accepts, and the README's table is the one the option table gives (UPDATE_GOLDEN=1 rewrites it).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { serveFlagOptions } from "../../src/cli/serve-config.js";
import { serveFlagsMarkdown } from "../../src/cli/serve-flags-help.js";
import { command as serve } from "../../src/cli/commands/serve.js";

const readme = fileURLToPath(new URL("../../README.md", import.meta.url));
const START = "<!-- serve-flags:start -->\n";
const END = "<!-- serve-flags:end -->";
const updating = process.env.UPDATE_GOLDEN === "1" || process.env.UPDATE_GOLDEN === "true";

test("serve --help lists every flag serve accepts", () => {
  for (const flag of Object.keys(serveFlagOptions)) assert.match(serve.help, new RegExp(`^  --${flag}( |$)`, "m"), `--${flag}`);
});

test("the README's serve flag table lists every flag serve accepts", () => {
  const table = serveFlagsMarkdown();
  for (const flag of Object.keys(serveFlagOptions)) assert.match(table, new RegExp(`^\\| \`--${flag}[ \`]`, "m"), `--${flag}`);
});

test("the README's serve flag table is up to date", () => {
  const text = readFileSync(readme, "utf8");
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  assert.ok(start >= 0 && end > start, `README.md has no ${START.trim()} … ${END} section`);
  const current = text.slice(start + START.length, end);
  const expected = serveFlagsMarkdown();
  if (updating) {
    if (current !== expected) writeFileSync(readme, text.slice(0, start + START.length) + expected + text.slice(end));
    return;
  }
  assert.fixture(current, expected, "README.md's serve flag table is stale: run UPDATE_GOLDEN=1 npm test -- serve-flags-readme");
});

test.run();
