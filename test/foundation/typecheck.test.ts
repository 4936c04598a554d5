// The whole tree (src, gen, test, bench) compiles under TypeScript strict mode.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";

test("tsc --noEmit reports no error", () => {
  const r = spawnSync(process.execPath, ["node_modules/typescript/bin/tsc", "--noEmit", "-p", "tsconfig.json"], {
    encoding: "utf8",
  });
  assert.is(r.status, 0, `${r.stdout}${r.stderr}`);
});

test.run();
