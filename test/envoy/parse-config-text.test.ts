// Config files are JSON or YAML; errors name the file and line.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ConfigTextError, parseConfigText } from "../../src/envoy/index.js";

test("JSON and YAML of the same config parse to the same value", () => {
  const json = parseConfigText('{"node": {"id": "a"}, "admin": {}}', "a.json");
  const yaml = parseConfigText("node:\n  id: a\nadmin: {}\n", "a.yaml");
  assert.equal(json, yaml);
});

const bad: [string, string, RegExp][] = [
  ["invalid JSON names file, line and column", '{\n  "node": {\n    "id": "a",\n  }\n}', /^f\.json:4:3: invalid JSON/],
  ["invalid YAML names file and line", "node:\n  id: a\n   bad: [\n", /^f\.json:\d+:\d+: invalid YAML/],
  ["duplicate YAML keys are rejected", "node: {}\nnode: {}\n", /^f\.json:2:1: invalid YAML: Map keys must be unique/],
  ["an empty file is an error", "  \n", /^f\.json: empty file/],
];
for (const [name, text, re] of bad) {
  test(name, () => {
    try {
      parseConfigText(text, "f.json");
      assert.unreachable("should throw");
    } catch (err) {
      assert.instance(err, ConfigTextError);
      assert.match((err as Error).message, re);
    }
  });
}

test.run();
