// JSON paths for issues and diffs, in Envoy's documentation style: original
// proto field names joined by dots, list indexes and map keys in brackets
// (static_resources.clusters[0].connect_timeout, metadata.filter_metadata["x"]).

/** One validation finding: where (JSON path) and what. */
export interface ValidationIssue {
  path: string;
  message: string;
}

/** `parent.child`, or `child` at the root. */
export function joinPath(parent: string, child: string): string {
  return parent === "" ? child : `${parent}.${child}`;
}

/** `parent[i]`. */
export function indexPath(parent: string, index: number): string {
  return `${parent}[${index}]`;
}

/** `parent["key"]` (map entries; keys are quoted so any text stays unambiguous). */
export function keyPath(parent: string, key: string): string {
  return `${parent}[${JSON.stringify(key)}]`;
}

/** The path as printed: the root itself is "(root)". */
export function displayPath(path: string): string {
  return path === "" ? "(root)" : path;
}

/** `path: message` lines, the CLI's output format (prefixed by the file name there). */
export function formatIssues(issues: readonly ValidationIssue[], prefix = ""): string {
  return issues.map((i) => `${prefix}${displayPath(i.path)}: ${i.message}`).join("\n");
}
