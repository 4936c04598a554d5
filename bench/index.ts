// `npm run bench`: runs each bench/*.bench.ts in its own process, one after the
// other (they measure throughput, so they must not share the two cores).
// `npm run bench -- sds` runs only those whose name contains "sds"; arguments from the
// first one starting with "--" on go to each benchmark (`npm run bench -- ads --trials 1`).
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";

const args = process.argv.slice(2);
const firstFlag = args.findIndex((a) => a.startsWith("--"));
const filters = firstFlag < 0 ? args : args.slice(0, firstFlag);
const passed = firstFlag < 0 ? [] : args.slice(firstFlag);
const files = readdirSync("bench")
  .filter((f) => f.endsWith(".bench.ts"))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
let failed = 0;
for (const f of files) {
  console.log(`\n=== bench/${f}`);
  const r = spawnSync(process.execPath, ["--import", "tsx", "--expose-gc", `bench/${f}`, ...passed], { stdio: "inherit" });
  if (r.status !== 0) failed++;
}
if (files.length === 0) console.log("no benchmark matched");
process.exitCode = failed > 0 ? 1 : 0;
