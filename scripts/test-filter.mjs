// Which test files `npm test -- FILTER…` runs (scripts/run-tests.mjs); see the rules there.

/** Whether test file `file` (a path relative to the repo, "/"-separated) is selected by `filter`. */
export function matchesFilter(file, filter) {
  const path = file.split("\\").join("/");
  const x = filter.split("\\").join("/").replace(/^\.\//, "");
  if (x.endsWith("*")) return path.includes(x.slice(0, -1));
  const dir = x.replace(/\/+$/, "");
  if (path === x || path === `${x}.test.ts` || path.startsWith(`${dir}/`)) return true;
  if (x.includes("/")) return false;
  const segments = path.split("/");
  const stem = segments.pop().replace(/\.test\.ts$/, "");
  return stem === x || segments.includes(x);
}
